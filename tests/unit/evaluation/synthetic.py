"""Small Transactions for the evaluation tests, built with Transactions.build."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pantree_common.datasets.transactions import Items, Transactions

DAY0 = 17_000
"""Epoch day of the synthetic data's first day (2016-07-19)."""


def items(count: int) -> Items:
    return Items(
        tuple(f"i{i:03d}" for i in range(count)),
        tuple(f"Item {i}" for i in range(count)),
        tuple(f"cat{i % 3}" for i in range(count)),
        tuple("dept" for _ in range(count)),
        np.ones(count),
    )


def build(
    events: Sequence[tuple[int, int, int]],
    n_customers: int | None = None,
    n_items: int | None = None,
    name: str = "synthetic",
) -> Transactions:
    """Transactions from (customer, item, day offset) triples, one unit at $1 each."""
    array = np.asarray(events, dtype=np.int64).reshape(-1, 3)
    customers = n_customers if n_customers is not None else int(array[:, 0].max()) + 1
    item_count = n_items if n_items is not None else int(array[:, 1].max()) + 1
    return Transactions.build(
        name,
        [f"c{c}" for c in range(customers)],
        items(item_count),
        array[:, 0],
        array[:, 1],
        array[:, 2] + DAY0,
        np.ones(len(array)),
        np.ones(len(array)),
    )


def random_shoppers(
    n_customers: int = 40, n_items: int = 30, days: int = 200, seed: int = 7
) -> Transactions:
    """Shoppers with a few rhythmic items (own period, some jitter) and random extras."""
    rng = np.random.default_rng(seed)
    events: list[tuple[int, int, int]] = []
    for customer in range(n_customers):
        for item in rng.choice(n_items, size=4, replace=False).tolist():
            period = int(rng.integers(5, 40))
            day = int(rng.integers(0, period))
            while day < days:
                events.append((customer, item, day))
                day += max(1, period + int(rng.integers(-3, 4)))
        for _ in range(int(rng.integers(2, 15))):
            events.append((customer, int(rng.integers(n_items)), int(rng.integers(days))))
    # Make sure the data spans exactly `days` days.
    events += [(0, 0, 0), (0, 0, days - 1)]
    return build(events, n_customers, n_items)
