"""Simulated shopper histories: one renewal process per item, produced a month at a time.

Every item follows the rhythm the catalog fitted for its category and the shopper's archetype
(pantree_common.domain.calibration): the item draws its own mean interval, then each interval
is that mean times a drawn ratio; quantities and prices paid come from the same fit. All items
advance together with numpy, one calendar month per step, so a 24-month, 200-item history costs
a few milliseconds and a server can stream each month as soon as it exists.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import zip_longest

import numpy as np
import numpy.typing as npt
from pantree.domain.v1 import history_pb2
from pantree.simulation.v1 import simulation_service_pb2

from pantree_common.domain import catalog, dates
from pantree_common.domain.calibration import (
    DEFAULT_RHYTHM,
    QUANTILE_POINTS,
    Rhythm,
    sample_rows,
)
from pantree_common.domain.catalog import Catalog, active_catalog
from pantree_common.domain.history import Product
from pantree_common.domain.seed import SeedItem, SeedSpec
from pantree_common.errors import Collector

ADDON_CATEGORIES = 4
"""How many categories (related to the seeds first, then typical of the archetype) contribute
add-on products."""
MAX_ADDONS_PER_CATEGORY = 2
TYPICAL_CATEGORIES_SHOWN = 8
MIN_INTERVAL_DAYS = 1.0
"""Floor on a drawn interval, so an item is bought at most once a day."""

_UINT64 = (1 << 64) - 1
_FloatArray = npt.NDArray[np.float64]
_IntArray = npt.NDArray[np.int64]


class Simulator:
    """Turns a validated SeedSpec (pantree_common.domain.seed) into simulated months."""

    def __init__(self, catalog: Catalog | None = None) -> None:
        self._catalog = catalog

    def months(self, spec: SeedSpec) -> Iterator[history_pb2.SimulatedMonth]:
        """Lazily yields spec.months months in order; month i is only computed when the caller
        asks for it (so a server can stream each month as soon as it exists). Unresolvable seed
        items raise InvalidArgument before the first month."""
        run = _Run(spec, self._catalog or active_catalog())
        for index in range(spec.months):
            yield run.month(index)


def archetype_protos() -> list[simulation_service_pb2.Archetype]:
    """Every archetype, in the catalog's (stable) definition order, with the categories its
    households rebuy more than others in the active catalog (the built-in catalog's are the
    hand-written ones)."""
    typical = active_catalog().calibration.archetype_categories
    return [
        simulation_service_pb2.Archetype(
            archetype_id=a.archetype_id,
            display_name=a.display_name,
            description=a.description,
            typical_categories=typical.get(a.archetype_id, a.typical_categories)[
                :TYPICAL_CATEGORIES_SHOWN
            ],
        )
        for a in catalog.ARCHETYPES.values()
    ]


@dataclass(frozen=True)
class _Item:
    """One product the shopper keeps rebuying and the rhythm it follows."""

    product: Product
    rhythm: Rhythm
    seed: SeedItem | None
    """The seed item it came from; None for an add-on."""


def _seed_products(spec: SeedSpec, catalog: Catalog) -> list[tuple[SeedItem, Product]]:
    """Each seed item's catalog product: the one the caller resolved (product_id), else the best
    match by name. Names that match nothing are reported together; a product named twice keeps
    its first seed."""
    errors = Collector()
    found: list[tuple[SeedItem, Product]] = []
    taken: set[str] = set()
    for position, seed in enumerate(spec.seed_items):
        if seed.product_id:
            product = catalog.lookup(errors, seed.product_id, f"seed_items[{position}].product_id")
            if product is None:
                continue
        else:
            product = _resolve(catalog, seed.name)
            if product is None:
                errors.add(
                    f"seed_items[{position}].name",
                    f"no {catalog.source} catalog product matches {seed.name[:64]!r}",
                )
                continue
        if product.product_id not in taken:
            taken.add(product.product_id)
            found.append((seed, product))
    errors.raise_if_any()
    return found


@lru_cache(maxsize=4096)
def _resolve(catalog: Catalog, name: str) -> Product | None:
    """Repeated names (a server sees the same seeds again and again) are answered from memory."""
    return catalog.resolve(name)


def _rhythm(catalog: Catalog, product: Product, archetype: str) -> Rhythm:
    return catalog.calibration.rhythm(product.category, archetype) or DEFAULT_RHYTHM


def _addon_items(
    catalog: Catalog, archetype: str, seeds: Sequence[Product], rng: np.random.Generator
) -> list[_Item]:
    """A few popular products from categories that households rebuying the seeds' categories
    also rebuy, then from the archetype's typical categories, so a basket holds more than what
    the shopper typed."""
    calibration = catalog.calibration
    seed_categories = list(dict.fromkeys(p.category for p in seeds))
    related = [calibration.related_categories.get(c, ()) for c in seed_categories]
    interleaved = [c for group in zip_longest(*related) for c in group if c]
    candidates = interleaved + list(calibration.archetype_categories.get(archetype, ()))
    chosen = [c for c in dict.fromkeys(candidates) if c not in seed_categories]
    exclude = {p.product_id for p in seeds}
    items: list[_Item] = []
    for category in chosen[:ADDON_CATEGORIES]:
        products = [
            catalog.by_id[pid]
            for pid in calibration.popular_products.get(category, ())
            if pid in catalog.by_id and pid not in exclude
        ]
        if not products:
            continue
        count = min(len(products), int(rng.integers(1, MAX_ADDONS_PER_CATEGORY + 1)))
        for pick in sorted(rng.choice(len(products), size=count, replace=False).tolist()):
            product = products[pick]
            items.append(_Item(product, _rhythm(catalog, product, archetype), None))
    return items


class Renewals:
    """Purchase times of many items, each a renewal process: a mean interval drawn per item and
    intervals of that mean times a drawn ratio. Shared by the simulator and simulate-check."""

    def __init__(
        self,
        rhythms: Sequence[Rhythm],
        rng: np.random.Generator,
        staples: Sequence[bool] | None = None,
    ) -> None:
        """`staples[i]`: item i is a regular buy the shopper named (its pace comes from the
        households that bought such a product on three or more days)."""
        self._rng = rng
        every = np.arange(len(rhythms))
        staple = staples or [False] * len(rhythms)
        means = np.array(
            [
                (r.staple if is_staple else r.mean_interval_days).on_grid()
                for r, is_staple in zip(rhythms, staple, strict=True)
            ]
        ).reshape(-1, QUANTILE_POINTS)
        self._ratios = np.array([r.interval_ratio.on_grid() for r in rhythms]).reshape(
            -1, QUANTILE_POINTS
        )
        self._means = sample_rows(means, every, rng)
        self._next = np.zeros(len(rhythms))

    def start(self, items: _IntArray, phase: _FloatArray) -> None:
        """Put the next purchase of `items` at `phase` (0-1) of one interval from now: an item
        already in the pantry was last bought some time before the simulation began."""
        self._next[items] = phase * self.intervals(items)

    def intervals(self, items: _IntArray) -> _FloatArray:
        """The next rebuy interval of each of `items`, in days."""
        ratio = sample_rows(self._ratios, items, self._rng)
        return np.maximum(self._means[items] * ratio, MIN_INTERVAL_DAYS)

    def until(self, end_day: float) -> tuple[_IntArray, _IntArray]:
        """Every purchase (item, whole day) before `end_day`, in the order they were drawn."""
        items_parts: list[_IntArray] = []
        days_parts: list[_FloatArray] = []
        while (due := np.flatnonzero(self._next < end_day)).size:
            items_parts.append(due)
            days_parts.append(np.floor(self._next[due]))
            self._next[due] += self.intervals(due)
        items = np.concatenate(items_parts) if items_parts else np.empty(0, dtype=np.int64)
        days = (np.concatenate(days_parts) if days_parts else np.empty(0)).astype(np.int64)
        return items, days


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

    def __init__(self, spec: SeedSpec, catalog: Catalog) -> None:
        self._spec = spec
        self._rng = _rng(spec)
        archetype = spec.archetype.archetype_id
        seeds = [
            _Item(product, _rhythm(catalog, product, archetype), seed)
            for seed, product in _seed_products(spec, catalog)
        ]
        addons = _addon_items(catalog, archetype, [i.product for i in seeds], self._rng)
        items = seeds + addons
        self._ids = [i.product.product_id for i in items]
        self._names = [i.product.name for i in items]
        self._categories = [i.product.category for i in items]
        order = sorted(range(len(items)), key=self._ids.__getitem__)
        self._id_rank = np.empty(len(items), dtype=np.int64)
        self._id_rank[order] = np.arange(len(items))
        rhythms = [i.rhythm for i in items]
        self._quantities = np.array([r.quantity.on_grid() for r in rhythms])
        self._price_ratios = np.array([r.price_ratio.on_grid() for r in rhythms])
        self._price = np.array(
            [
                i.seed.unit_price_usd
                if i.seed and i.seed.unit_price_usd is not None
                else i.product.unit_price_usd
                for i in items
            ]
        )
        self._is_seed = np.array([i.seed is not None for i in items])
        self._seed_quantity = _nan_unless([i.seed.quantity if i.seed else None for i in items])
        self._seed_price = _nan_unless([i.seed.unit_price_usd if i.seed else None for i in items])
        # Seeds were just bought (day 0); an add-on was last bought before the simulation, so
        # its next purchase falls anywhere in one interval.
        self._renewals = Renewals(rhythms, self._rng, [i.seed is not None for i in items])
        addon_items = np.arange(len(seeds), len(items))
        self._renewals.start(addon_items, self._rng.random(addon_items.size))

    def month(self, index: int) -> history_pb2.SimulatedMonth:
        """Month `index` (0-based); must be called for 0, 1, 2, ... in turn."""
        start = self._spec.start_date
        first, after = dates.shift_months(start, index), dates.shift_months(start, index + 1)
        items, days = self._renewals.until((after - start).days)
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
        """Quantity and unit price of each purchase, drawn from the item's fitted rhythm (whole
        units; the seed's quantity when given); the seed purchase itself is exactly what the
        shopper entered."""
        drawn = np.maximum(1.0, np.rint(sample_rows(self._quantities, items, self._rng)))
        ratio = sample_rows(self._price_ratios, items, self._rng)
        given_quantity = self._seed_quantity[items]
        quantity = np.where(np.isnan(given_quantity), drawn, given_quantity)
        price = np.round(self._price[items] * ratio, 2)
        seed_purchase = (days == 0) & self._is_seed[items]
        given_price = self._seed_price[items]
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
