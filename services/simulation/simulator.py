"""Simulated shopper histories: one renewal process per item, produced a month at a time.

Every item the shopper buys is rebought after gamma-distributed intervals whose mean comes from
its category and the archetype's pace, and whose shape is the archetype's regularity. All items
advance together with numpy, one calendar month per step, so a 24-month, 200-item history costs
a few milliseconds and a server can stream each month as soon as it exists.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt
from pantree.domain.v1 import history_pb2
from pantree.simulation.v1 import simulation_service_pb2

from pantree_common.domain import catalog, dates
from pantree_common.domain.history import MAX_ID_CHARS, Product
from pantree_common.domain.seed import SeedItem, SeedSpec

CUSTOM_INTERVAL_DAYS = 14.0
"""Mean rebuy interval of a product the catalog does not know, before the archetype's pace:
fortnightly sits between fresh food (about weekly) and household stock (about monthly)."""
CUSTOM_PRICE_USD = 4.99
"""Shelf price of an unknown product when the seed gives none: a typical grocery item."""
CUSTOM_QUANTITY = 1.0
"""Basket quantity of an unknown product, before the archetype's quantity factor."""
CUSTOM_ID_PREFIX = "custom-"

ADDON_CATEGORIES = 4
"""How many of the archetype's typical categories (best first) contribute add-on products."""
MAX_ADDONS_PER_CATEGORY = 2
MIN_INTERVAL_DAYS = 1.0
"""Floor on a drawn interval, so an item is bought at most once a day."""
QUANTITY_SIGMA = 0.15
"""Spread of the log-normal basket-size noise: mostly the usual quantity, sometimes one more."""
PRICE_NOISE = 0.05
PROMOTION_PROBABILITY = 0.08
PROMOTION_DISCOUNT = 0.20

_SLUG_WORD = re.compile(r"[a-z0-9]+")
_SLUG_HASH_CHARS = 12
_UINT64 = (1 << 64) - 1
_FloatArray = npt.NDArray[np.float64]
_IntArray = npt.NDArray[np.int64]


class Simulator:
    """Turns a validated SeedSpec (pantree_common.domain.seed) into simulated months."""

    def months(self, spec: SeedSpec) -> Iterator[history_pb2.SimulatedMonth]:
        """Lazily yields spec.months months in order; month i is only computed when the caller
        asks for it (so a server can stream each month as soon as it exists)."""
        run = _Run(spec)
        for index in range(spec.months):
            yield run.month(index)


def archetype_protos() -> list[simulation_service_pb2.Archetype]:
    """Every archetype, in the catalog's (stable) definition order."""
    return [
        simulation_service_pb2.Archetype(
            archetype_id=a.archetype_id,
            display_name=a.display_name,
            description=a.description,
            typical_categories=a.typical_categories,
        )
        for a in catalog.ARCHETYPES.values()
    ]


@dataclass(frozen=True)
class _Item:
    """One product the shopper keeps rebuying, with its per-trip quantity and price bases."""

    product: Product
    mean_interval_days: float
    quantity: float
    price_usd: float
    seed: SeedItem | None
    """The seed item it came from; None for an add-on."""


@lru_cache(maxsize=4096)
def _resolve(name: str) -> Product | None:
    """catalog.resolve scans the whole catalog per call; repeated names (a server sees the same
    seeds again and again) are answered from memory."""
    return catalog.resolve(name)


def _custom_id(name: str, taken: set[str]) -> str:
    """A readable, stable, unused product id for a name the catalog does not know."""
    slug = "-".join(_SLUG_WORD.findall(name.lower()))
    if not slug:  # nothing ASCII to show (for example "牛奶"): fall back to a stable digest
        slug = hashlib.blake2b(name.encode(), digest_size=_SLUG_HASH_CHARS // 2).hexdigest()
    room = MAX_ID_CHARS - len(CUSTOM_ID_PREFIX) - 4  # keeps a "-NNN" suffix within the limit
    base = CUSTOM_ID_PREFIX + slug[:room].rstrip("-")
    candidate, n = base, 1
    while candidate in taken:  # "Salsa Verde" and "salsa-verde" are distinct seed names
        n += 1
        candidate = f"{base}-{n}"
    return candidate


def _seed_items(spec: SeedSpec) -> list[_Item]:
    """Seed items as catalog (or custom) products; a product named twice keeps its first seed."""
    archetype = spec.archetype
    items: list[_Item] = []
    taken: set[str] = set()
    for seed in spec.seed_items:
        product = _resolve(seed.name)
        if product is None:
            price = CUSTOM_PRICE_USD if seed.unit_price_usd is None else seed.unit_price_usd
            product = Product(_custom_id(seed.name, taken), seed.name, unit_price_usd=price)
            interval, quantity = CUSTOM_INTERVAL_DAYS, CUSTOM_QUANTITY
        elif product.product_id in taken:
            continue
        else:
            category = catalog.CATEGORIES[product.category]
            interval, quantity = category.typical_interval_days, category.typical_quantity
        taken.add(product.product_id)
        items.append(
            _Item(
                product,
                interval * archetype.interval_factor,
                # The seed's own numbers already describe this household, so no archetype factor.
                seed.quantity
                if seed.quantity is not None
                else quantity * archetype.quantity_factor,
                (
                    seed.unit_price_usd
                    if seed.unit_price_usd is not None
                    else product.unit_price_usd * archetype.price_factor
                ),
                seed,
            )
        )
    return items


def _addon_items(
    archetype: catalog.Archetype, exclude: set[str], rng: np.random.Generator
) -> list[_Item]:
    """A few catalog products from the archetype's first typical categories, so a shopper's
    basket holds more than what they typed."""
    items: list[_Item] = []
    for name in archetype.typical_categories[:ADDON_CATEGORIES]:
        candidates = [
            p for p in catalog.products() if p.category == name and p.product_id not in exclude
        ]
        if not candidates:
            continue
        count = min(len(candidates), int(rng.integers(1, MAX_ADDONS_PER_CATEGORY + 1)))
        category = catalog.CATEGORIES[name]
        for pick in sorted(rng.choice(len(candidates), size=count, replace=False).tolist()):
            product = candidates[pick]
            items.append(
                _Item(
                    product,
                    category.typical_interval_days * archetype.interval_factor,
                    category.typical_quantity * archetype.quantity_factor,
                    product.unit_price_usd * archetype.price_factor,
                    None,
                )
            )
    return items


def _rng(spec: SeedSpec) -> np.random.Generator:
    """A generator that depends only on the request: random_seed plus a digest of the customer
    id (two shoppers with the same seed are not clones), never on Python's salted hash()."""
    digest = hashlib.blake2b(spec.customer_id.encode(), digest_size=16).digest()
    entropy = [spec.random_seed & _UINT64, int.from_bytes(digest, "little")]
    return np.random.default_rng(np.random.SeedSequence(entropy))


def _nan_unless(values: Sequence[float | None]) -> _FloatArray:
    """Optional seed overrides as one array, NaN where not given, so numpy picks per event."""
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


class _Run:
    """The state of one simulation between months: each item's next purchase time."""

    def __init__(self, spec: SeedSpec) -> None:
        self._spec = spec
        self._rng = _rng(spec)
        seeds = _seed_items(spec)
        addons = _addon_items(spec.archetype, {i.product.product_id for i in seeds}, self._rng)
        items = seeds + addons
        self._ids = [i.product.product_id for i in items]
        self._names = [i.product.name for i in items]
        self._categories = [i.product.category for i in items]
        order = sorted(range(len(items)), key=self._ids.__getitem__)
        self._id_rank = np.empty(len(items), dtype=np.int64)
        self._id_rank[order] = np.arange(len(items))
        self._shape = spec.archetype.regularity
        self._scale = np.array([i.mean_interval_days for i in items]) / self._shape
        self._quantity = np.array([i.quantity for i in items])
        self._price = np.array([i.price_usd for i in items])
        self._is_seed = np.array([i.seed is not None for i in items])
        self._seed_quantity = _nan_unless([i.seed.quantity if i.seed else None for i in items])
        self._seed_price = _nan_unless([i.seed.unit_price_usd if i.seed else None for i in items])
        # Days since the start, fractional. Seeds were just bought (day 0); an add-on was last
        # bought before the simulation, so its next purchase falls anywhere in one interval.
        self._next = np.zeros(len(items))
        phase = self._rng.random(len(addons)) * self._intervals(np.arange(len(seeds), len(items)))
        self._next[len(seeds) :] = phase

    def _intervals(self, items: _IntArray) -> _FloatArray:
        """The next rebuy interval of each of `items`, in days."""
        drawn = self._rng.gamma(self._shape, self._scale[items])
        return np.maximum(drawn, MIN_INTERVAL_DAYS)

    def month(self, index: int) -> history_pb2.SimulatedMonth:
        """Month `index` (0-based); must be called for 0, 1, 2, ... in turn."""
        start = self._spec.start_date
        first, after = dates.shift_months(start, index), dates.shift_months(start, index + 1)
        end_offset = (after - start).days
        items_parts: list[_IntArray] = []
        days_parts: list[_FloatArray] = []
        while (due := np.flatnonzero(self._next < end_offset)).size:
            items_parts.append(due)
            days_parts.append(np.floor(self._next[due]))
            self._next[due] += self._intervals(due)
        items = np.concatenate(items_parts) if items_parts else np.empty(0, dtype=np.int64)
        days = (np.concatenate(days_parts) if days_parts else np.empty(0)).astype(np.int64)
        quantity, price = self._baskets(items, days)
        order = np.lexsort((self._id_rank[items], days))
        simulated = history_pb2.SimulatedMonth(
            month_index=index + 1,
            month_count=self._spec.months,
            start_date=dates.to_proto(first),
            end_date=dates.to_proto(after - dt.timedelta(days=1)),
            total_spend_usd=round(float(np.dot(quantity, price)), 2),
        )
        self._add_purchases(simulated, items[order], days[order], quantity[order], price[order])
        return simulated

    def _baskets(self, items: _IntArray, days: _IntArray) -> tuple[_FloatArray, _FloatArray]:
        """Quantity and unit price of each purchase: the item's usual basket with a little noise
        and the odd promotion; the seed purchase itself is exactly what the shopper entered."""
        n = items.size
        noise = self._rng.lognormal(0.0, QUANTITY_SIGMA, n)
        quantity = np.maximum(1.0, np.rint(self._quantity[items] * noise))
        factor = self._rng.uniform(1 - PRICE_NOISE, 1 + PRICE_NOISE, n)
        factor[self._rng.random(n) < PROMOTION_PROBABILITY] *= 1 - PROMOTION_DISCOUNT
        price = np.round(self._price[items] * factor, 2)
        seed_purchase = (days == 0) & self._is_seed[items]
        given_quantity = self._seed_quantity[items]
        given_price = self._seed_price[items]
        quantity = np.where(seed_purchase & ~np.isnan(given_quantity), given_quantity, quantity)
        price = np.where(seed_purchase & ~np.isnan(given_price), given_price, price)
        return quantity, price

    def _add_purchases(
        self,
        month: history_pb2.SimulatedMonth,
        items: _IntArray,
        days: _IntArray,
        quantity: _FloatArray,
        price: _FloatArray,
    ) -> None:
        """Append the purchase rows in place: building them inside the month is about twice as
        fast as building loose messages that the month then copies."""
        start = self._spec.start_date
        day_protos = {d: dates.to_proto(start + dt.timedelta(days=d)) for d in set(days.tolist())}
        add = month.purchases.add
        for i, d, q, p in zip(
            items.tolist(), days.tolist(), quantity.tolist(), price.tolist(), strict=True
        ):
            add(
                product_id=self._ids[i],
                product_name=self._names[i],
                category=self._categories[i],
                purchase_date=day_protos[d],
                quantity=q,
                unit_price_usd=p,
            )
