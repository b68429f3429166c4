"""A seed purchase (archetype + items + months) validated once, for the orchestrator and the
simulation alike, so both reject the same requests with the same field paths."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from google.type import date_pb2
from pantree.domain.v1 import product_pb2

from pantree_common.domain import catalog, dates
from pantree_common.domain.history import MAX_ID_CHARS, MAX_NAME_CHARS, check_text
from pantree_common.errors import Collector

MAX_SEED_ITEMS = 200
MIN_MONTHS = 1
MAX_MONTHS = 24
DEFAULT_MONTHS = 6
# Simulated dates stay where every step can represent them (epoch days >= 0, months addable).
EARLIEST_START = dt.date(1970, 1, 1)
LATEST_START = dt.date(2200, 1, 1)


@dataclass(frozen=True)
class SeedItem:
    """What the shopper typed, with optional overrides of the catalog's quantity and price."""

    name: str
    quantity: float | None = None
    unit_price_usd: float | None = None
    product_id: str = ""
    """The catalog product already chosen for `name`; empty to resolve by name."""


@dataclass(frozen=True)
class SeedSpec:
    """A valid simulation request."""

    customer_id: str
    archetype: catalog.Archetype
    seed_items: tuple[SeedItem, ...]
    months: int
    random_seed: int
    start_date: dt.date


def default_start(months: int, today: dt.date) -> dt.date:
    """The first day of the month `months` months before today's month."""
    return dates.shift_months(today.replace(day=1), -months)


class SeedRequest(Protocol):
    """The seed fields ProcessSeedRequest and SimulateHistoryRequest share."""

    customer_id: str
    archetype: str
    months: int
    random_seed: int

    @property
    def seed_items(self) -> Sequence[product_pb2.SeedItem]: ...

    @property
    def start_date(self) -> date_pb2.Date: ...

    def HasField(self, field_name: Literal["start_date"]) -> bool: ...  # noqa: N802


def seed_spec_of(request: SeedRequest, today: dt.date) -> SeedSpec:
    """Validate the seed fields of a request message."""
    return seed_spec(
        customer_id=request.customer_id,
        archetype=request.archetype,
        seed_items=request.seed_items,
        months=request.months,
        random_seed=request.random_seed,
        start_date=request.start_date if request.HasField("start_date") else None,
        today=today,
    )


def seed_spec(
    *,
    customer_id: str,
    archetype: str,
    seed_items: Sequence[product_pb2.SeedItem],
    months: int,
    random_seed: int,
    start_date: date_pb2.Date | None,
    today: dt.date,
) -> SeedSpec:
    """Validate the fields of a seed request; raises InvalidArgument naming every bad field."""
    errors = Collector()
    check_text(errors, customer_id, "customer_id", MAX_ID_CHARS, required=False)
    known = catalog.check_archetype(errors, archetype, required=True)
    if not seed_items:
        errors.add("seed_items", "at least one seed item is required")
    elif len(seed_items) > MAX_SEED_ITEMS:
        errors.add("seed_items", f"at most {MAX_SEED_ITEMS} items, got {len(seed_items)}")
    items: list[SeedItem] = []
    seen: set[str] = set()
    for i, item in enumerate(seed_items[:MAX_SEED_ITEMS]):
        path = f"seed_items[{i}]"
        before = len(errors.violations)
        check_text(errors, item.name, f"{path}.name", MAX_NAME_CHARS, required=True)
        key = item.name.strip().lower()
        if key and key in seen:
            errors.add(f"{path}.name", f"duplicate seed item {item.name[:64]!r}")
        seen.add(key)
        quantity = item.quantity if item.HasField("quantity") else None
        if quantity is not None and not (math.isfinite(quantity) and quantity > 0):
            errors.add(f"{path}.quantity", f"must be finite and > 0, got {quantity}")
        price = item.unit_price_usd if item.HasField("unit_price_usd") else None
        if price is not None and not (math.isfinite(price) and price >= 0):
            errors.add(f"{path}.unit_price_usd", f"must be finite and >= 0, got {price}")
        check_text(errors, item.product_id, f"{path}.product_id", MAX_ID_CHARS, required=False)
        if len(errors.violations) == before:
            items.append(SeedItem(item.name.strip(), quantity, price, item.product_id))
    month_count = DEFAULT_MONTHS if months == 0 else months
    months_ok = errors.check(
        MIN_MONTHS <= month_count <= MAX_MONTHS,
        "months",
        f"must be between {MIN_MONTHS} and {MAX_MONTHS}, got {months}",
    )
    # Out-of-range months (2**27 came from a fuzzer) would put the default start before year 1.
    start = default_start(month_count if months_ok else DEFAULT_MONTHS, today)
    if start_date is not None:
        try:
            start = dates.from_proto(start_date, "start_date")
        except ValueError as exc:
            errors.add("start_date", str(exc).removeprefix("start_date: "))
        else:
            errors.check(
                EARLIEST_START <= start <= LATEST_START,
                "start_date",
                f"must be between {EARLIEST_START} and {LATEST_START}, got {start}",
            )
    errors.raise_if_any()
    assert known is not None
    return SeedSpec(customer_id, known, tuple(items), month_count, random_seed, start)
