"""Many customers' purchases as numpy columns: what evaluation, training and batch read.

One row per purchase event, sorted by (customer, day, item). Customers and items are dense
indexes into `customer_ids` and `items`, so every per-customer or per-item aggregate is a
numpy segment operation rather than a Python loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from pantree_common.domain.history import History, Product


@dataclass(frozen=True, eq=False)
class Items:
    """Item metadata; position i describes item index i."""

    item_ids: tuple[str, ...]
    names: tuple[str, ...]
    categories: tuple[str, ...]
    departments: tuple[str, ...]
    unit_price_usd: NDArray[np.float64]
    """Typical shelf price of one unit (median price paid), 0 when unknown."""

    def __len__(self) -> int:
        return len(self.item_ids)

    def product(self, index: int) -> Product:
        return Product(
            self.item_ids[index],
            self.names[index],
            self.categories[index],
            self.departments[index],
            float(self.unit_price_usd[index]),
        )


@dataclass(frozen=True, eq=False)
class Transactions:
    """Purchase events of many customers, sorted by (customer, day, item)."""

    name: str
    customer_ids: tuple[str, ...]
    items: Items
    customer: NDArray[np.int32]
    item: NDArray[np.int32]
    day: NDArray[np.int32]
    """Days since 1970-01-01 in the shoppers' local calendar."""
    quantity: NDArray[np.float64]
    price: NDArray[np.float64]
    """Unit price paid in US dollars."""

    @classmethod
    def build(
        cls,
        name: str,
        customer_ids: Sequence[str],
        items: Items,
        customer: NDArray[np.integer],
        item: NDArray[np.integer],
        day: NDArray[np.integer],
        quantity: NDArray[np.floating],
        price: NDArray[np.floating],
    ) -> Transactions:
        """Columns in any order; sorts them and checks they agree."""
        lengths = {len(customer), len(item), len(day), len(quantity), len(price)}
        if len(lengths) != 1:
            raise ValueError(f"columns differ in length: {sorted(lengths)}")
        order = np.lexsort((item, day, customer))
        return cls(
            name,
            tuple(customer_ids),
            items,
            np.asarray(customer, dtype=np.int32)[order],
            np.asarray(item, dtype=np.int32)[order],
            np.asarray(day, dtype=np.int32)[order],
            np.asarray(quantity, dtype=np.float64)[order],
            np.asarray(price, dtype=np.float64)[order],
        )

    @property
    def event_count(self) -> int:
        return int(self.day.size)

    def window(self, start_day: int, end_day: int) -> Transactions:
        """The events with start_day <= day < end_day (same customer and item indexes)."""
        return self.events((self.day >= start_day) & (self.day < end_day))

    def events(self, rows: slice | NDArray[np.bool_] | NDArray[np.integer]) -> Transactions:
        """The events at `rows` (a slice, a mask or ascending indexes), with the same customer
        and item indexes; a slice shares the columns instead of copying them."""
        return Transactions(
            self.name,
            self.customer_ids,
            self.items,
            self.customer[rows],
            self.item[rows],
            self.day[rows],
            self.quantity[rows],
            self.price[rows],
        )

    def customer_offsets(self) -> NDArray[np.int64]:
        """Row offsets per customer index: rows of customer c are offsets[c]:offsets[c + 1]."""
        counts = np.bincount(self.customer, minlength=len(self.customer_ids))
        return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)

    def histories(self, customers: Sequence[int] | None = None) -> list[History]:
        """Domain histories of the given customer indexes (default: every customer with events),
        each listing only the items that customer bought."""
        offsets = self.customer_offsets()
        wanted = np.flatnonzero(np.diff(offsets)) if customers is None else np.asarray(customers)
        histories: list[History] = []
        for c in wanted.tolist():
            rows = slice(offsets[c], offsets[c + 1])
            bought, local = np.unique(self.item[rows], return_inverse=True)
            histories.append(
                History.build(
                    self.customer_ids[c],
                    [self.items.product(i) for i in bought.tolist()],
                    local,
                    self.day[rows],
                    self.quantity[rows],
                    self.price[rows],
                )
            )
        return histories
