"""Model features of (customer, product) pairs, from repurchase statistics alone.

The recommendation service receives, per request, a `HistoryAnalysis` (one `ItemStatistics` per
product, from the frequency step) and the `Product` messages; the training job and the evaluation
have an `ItemStatsTable` of many customers. Both become the same *columns* (numpy arrays keyed by
`ItemStatistics` field names, plus the product's category, department and price), and one function,
`feature_matrix`, turns columns into features. So a model scores a request exactly as it was
trained, and no feature needs anything the service does not receive.

Columns (one value per row unless said otherwise):
    customer_offsets          rows of customer c are customer_offsets[c]:customer_offsets[c+1]
    as_of_epoch_day           the analysis day of the row's customer
    purchase_days, intervals_days (flat) + interval_offsets (n_rows + 1), mean_interval_days,
    median_interval_days, std_interval_days, coefficient_of_variation, trend_slope_days,
    days_since_last_purchase, recency_weight, last_purchase_epoch_day, quantity_per_day,
    total_quantity, mean_unit_price_usd          as in ItemStatistics
    unit_price_usd            the product's shelf price; 0 when unknown (the price paid is used)
    product_code, category_code, department_code
                              the product's codes in the model's Priors (Priors.encode), -1
                              when the training data did not know it

`confidence` and `meets_minimum_purchases` are deliberately not features: they depend on the
caller's minimum-purchases setting, and the model sees their ingredients anyway.

Features (FEATURE_NAMES, in matrix column order; NaN where undefined, which the gradient-boosted
trees route on their own). "Trips" are the customer's shopping days.
    purchase_days             distinct days the product was bought
    cold_start                1 when purchase_days < COLD_START_PURCHASE_DAYS (no usable rhythm)
    mean_interval_days, median_interval_days       NaN with fewer than 2 purchase days
    std_interval_days, coefficient_of_variation    NaN with fewer than 3 purchase days
    trend_slope_days          NaN with fewer than 4 purchase days
    last_interval_days        the most recent gap; NaN with fewer than 2 purchase days
    days_since_last_purchase
    overdue_ratio             days since last / median interval (NaN without a rhythm)
    due_in_days               median interval - days since last (NaN without a rhythm)
    recency_weight
    tenure_days               days from the first purchase of the product to the analysis day
    trips_since_last_purchase the customer's trips after the product's last purchase
    share_last_5_trips, share_last_10_trips   share of the customer's last 5 / 10 trips (all, if
                              fewer) that included the product
    short_gap_share           share of the gaps of at most SHORT_GAP_DAYS (NaN without gaps)
    longest_interval_days     NaN without gaps
    purchases_28d, purchases_56d, purchases_91d   purchase days in the last 4, 8, 13 weeks
    rate_per_28d              purchase days per 28 days of the customer's observed history
    trip_share                purchase days / the customer's trips
    trip_share_56d            the same over the last 8 weeks
    quantity_per_purchase     total units / purchase days
    quantity_per_day
    unit_price_usd            shelf price, else the mean price paid
    product_rate, category_rate, department_rate
                              learned priors: share of the training pairs of this product /
                              category / department rebought within the horizon, each smoothed
                              towards the next coarser level (PRIOR_STRENGTH pseudo-pairs)
    product_interval_days, category_interval_days
                              learned priors: median gap between purchases of the product /
                              category over all training customers
    customer_trips            the customer's trips (union of all its products' purchase days)
    customer_trips_28d        trips in the last 4 weeks
    customer_days_since_trip  days since the customer's last trip
    customer_history_days     days since the customer's first trip
    customer_products         distinct products the customer bought
    customer_gap_days         mean days between the customer's trips (NaN with one)
    customer_short_gap_share  the customer's gaps of at most SHORT_GAP_DAYS per purchase day

The trips are rebuilt from every product's last purchase day and intervals, so they are exact
as long as the analysis lists every product of the history (the frequency step does).

Cold start: a pair with 1-2 purchase days has no rhythm of its own (its interval features are
NaN and cold_start is 1); the model then leans on the learned priors. The priors travel with the
model (`Priors`); a product the training data did not know falls back to its category, then its
department, then the global figure. The built-in catalog's categories ("dairy") are not Complete
Journey's ("FLUID MILK PRODUCTS"), but the departments match once case-folded ("grocery",
"produce", "meat", "drug gm"). The shopper's archetype is not a feature: Complete Journey carries
no archetype, and a feature that never varies in training cannot be learned.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray
from pantree.domain.v1 import analysis_pb2, product_pb2

if TYPE_CHECKING:  # only the type: the service never imports the frequency core
    from services.frequency.statistics import ItemStatsTable

COLD_START_PURCHASE_DAYS = 3
"""Pairs with fewer purchase days than this have no usable rhythm of their own."""
PRIOR_STRENGTH = 20.0
"""Pseudo-observations of the parent's rate in a smoothed product, category or department rate."""
SHORT_GAP_DAYS = 28
"""A gap up to this long counts as a quick rebuy (short_gap_share)."""
MIN_PRODUCT_PAIRS = 10
"""Training pairs a product needs to keep figures of its own in the priors."""

FEATURE_NAMES: tuple[str, ...] = (
    "purchase_days",
    "cold_start",
    "mean_interval_days",
    "median_interval_days",
    "std_interval_days",
    "coefficient_of_variation",
    "trend_slope_days",
    "last_interval_days",
    "days_since_last_purchase",
    "overdue_ratio",
    "due_in_days",
    "recency_weight",
    "tenure_days",
    "trips_since_last_purchase",
    "share_last_5_trips",
    "share_last_10_trips",
    "short_gap_share",
    "longest_interval_days",
    "purchases_28d",
    "purchases_56d",
    "purchases_91d",
    "rate_per_28d",
    "trip_share",
    "trip_share_56d",
    "quantity_per_purchase",
    "quantity_per_day",
    "unit_price_usd",
    "product_rate",
    "category_rate",
    "department_rate",
    "product_interval_days",
    "category_interval_days",
    "customer_trips",
    "customer_trips_28d",
    "customer_days_since_trip",
    "customer_history_days",
    "customer_products",
    "customer_gap_days",
    "customer_short_gap_share",
)

PRIOR_FEATURES: tuple[str, ...] = (
    "product_rate",
    "category_rate",
    "department_rate",
    "product_interval_days",
    "category_interval_days",
)
"""The features Priors.features provides (learned from the training data)."""

STATISTICS_FIELDS: tuple[str, ...] = (
    "purchase_days",
    "mean_interval_days",
    "median_interval_days",
    "std_interval_days",
    "coefficient_of_variation",
    "trend_slope_days",
    "days_since_last_purchase",
    "recency_weight",
    "last_purchase_epoch_day",
    "quantity_per_day",
    "total_quantity",
    "mean_unit_price_usd",
)
"""The ItemStatistics fields the features read (besides intervals_days)."""

Columns = Mapping[str, NDArray[Any]]
"""Column arrays keyed by ItemStatistics field names (plus the extras in the module doc)."""


def normalize_key(text: str) -> str:
    """Category and department names compare case- and space-insensitively."""
    return " ".join(text.casefold().split())


def _normalized(values: NDArray[np.str_]) -> NDArray[np.str_]:
    unique, inverse = np.unique(np.asarray(values, dtype=np.str_), return_inverse=True)
    normal = np.asarray([normalize_key(str(v)) for v in unique.tolist()], dtype=np.str_)
    return normal[inverse.reshape(-1)]


def _encode(keys: NDArray[np.str_], values: NDArray[np.str_]) -> NDArray[np.int64]:
    """Position of each value among the sorted keys, -1 when absent (or empty)."""
    values = np.asarray(values, dtype=np.str_)
    if not keys.size or not values.size:
        return np.full(values.size, -1, dtype=np.int64)
    position = np.clip(np.searchsorted(keys, values), 0, keys.size - 1)
    return np.where((keys[position] == values) & (values != ""), position, -1).astype(np.int64)


def _pick(
    values: NDArray[np.float64], code: NDArray[np.int64], fallback: NDArray[np.float64] | float
) -> NDArray[np.float64]:
    """values[code] where code >= 0, else the fallback (per row or scalar)."""
    result = np.broadcast_to(np.asarray(fallback, dtype=np.float64), code.shape).copy()
    known = code >= 0
    result[known] = values[code[known]]
    return result


def _group_median(
    group: NDArray[np.int64], values: NDArray[np.float64], groups: int
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Median of the values of each group in [0, groups) (NaN without values), and counts."""
    keep = group >= 0
    group, values = group[keep], values[keep]
    count = np.bincount(group, minlength=groups)
    median = np.full(groups, np.nan)
    if values.size:
        order = np.lexsort((values, group))
        ordered = values[order]
        starts = np.concatenate([[0], np.cumsum(count)])[:-1]
        has = count > 0
        low = ordered[(starts + (count - 1) // 2)[has]]
        high = ordered[(starts + count // 2)[has]]
        median[has] = (low + high) / 2
    return median, count


@dataclass(frozen=True, eq=False)
class Priors:
    """What a product, its category and its department say before the pair's own history:
    rebuy rates within the horizon and typical intervals, learned from training data."""

    product_keys: NDArray[np.str_]
    """Sorted product ids with enough training pairs to have their own figures."""
    product_rate: NDArray[np.float64]
    product_interval_days: NDArray[np.float64]
    category_keys: NDArray[np.str_]
    """Sorted, normalised category names."""
    category_rate: NDArray[np.float64]
    category_interval_days: NDArray[np.float64]
    department_keys: NDArray[np.str_]
    department_rate: NDArray[np.float64]
    department_interval_days: NDArray[np.float64]
    global_rate: float
    global_interval_days: float

    @classmethod
    def fit(
        cls,
        item_ids: NDArray[np.str_],
        item_categories: NDArray[np.str_],
        item_departments: NDArray[np.str_],
        row_item: NDArray[np.integer],
        rebought: NDArray[np.bool_],
        interval_item: NDArray[np.integer],
        intervals_days: NDArray[np.float64],
        min_product_pairs: int = MIN_PRODUCT_PAIRS,
    ) -> Priors:
        """Figures from labelled pairs (row_item indexes the item_* arrays; rebought: bought
        within the horizon) and completed gaps (interval_item, intervals_days).

        Rates are smoothed: (rebought + m * parent rate) / (pairs + m) with m = PRIOR_STRENGTH,
        the parent of a product being its category, of a category its department, of a
        department the global rate. Intervals are medians; a group without any gap takes its
        parent's. Products with fewer than min_product_pairs pairs are left out (their category
        speaks for them), which also keeps the artifact small."""
        row_item = np.asarray(row_item, dtype=np.int64)
        labels = np.asarray(rebought, dtype=np.float64)
        interval_item = np.asarray(interval_item, dtype=np.int64)
        intervals = np.asarray(intervals_days, dtype=np.float64)
        global_rate = float(labels.mean()) if labels.size else 0.0
        global_interval = float(np.median(intervals)) if intervals.size else 30.0

        def level(
            names: NDArray[np.str_],
            parent_rate: NDArray[np.float64],
            parent_interval: NDArray[np.float64],
        ) -> tuple[
            NDArray[np.str_],
            NDArray[np.float64],
            NDArray[np.float64],
            NDArray[np.float64],
            NDArray[np.float64],
            NDArray[np.float64],
        ]:
            """Known keys, their pair counts, smoothed rates and intervals, and each item's rate
            and interval (its key's, else its parent's). parent_* are per item."""
            keys, item_code = np.unique(names, return_inverse=True)
            item_code = item_code.reshape(-1).astype(np.int64)
            groups = keys.size
            items_per_key = np.maximum(np.bincount(item_code, minlength=groups), 1)
            key_parent_rate = np.bincount(item_code, parent_rate, groups) / items_per_key
            key_parent_interval = np.bincount(item_code, parent_interval, groups) / items_per_key
            row_code = item_code[row_item]
            pairs = np.bincount(row_code, minlength=groups).astype(np.float64)
            positives = np.bincount(row_code, weights=labels, minlength=groups)
            rate = (positives + PRIOR_STRENGTH * key_parent_rate) / (pairs + PRIOR_STRENGTH)
            median, _ = _group_median(item_code[interval_item], intervals, groups)
            interval = np.where(np.isnan(median), key_parent_interval, median)
            known = keys != ""
            item_known = known[item_code]
            item_rate = np.where(item_known, rate[item_code], parent_rate)
            item_interval = np.where(item_known, interval[item_code], parent_interval)
            return keys[known], pairs[known], rate[known], interval[known], item_rate, item_interval

        n_items = np.asarray(item_ids).size
        department_keys, _, department_rate, department_interval, item_rate, item_interval = level(
            _normalized(item_departments),
            np.full(n_items, global_rate),
            np.full(n_items, global_interval),
        )
        category_keys, _, category_rate, category_interval, item_rate, item_interval = level(
            _normalized(item_categories), item_rate, item_interval
        )
        product_keys, product_pairs, product_rate, product_interval, _, _ = level(
            np.asarray(item_ids, dtype=np.str_), item_rate, item_interval
        )
        kept = product_pairs >= min_product_pairs
        return cls(
            product_keys=product_keys[kept],
            product_rate=product_rate[kept],
            product_interval_days=product_interval[kept],
            category_keys=category_keys,
            category_rate=category_rate,
            category_interval_days=category_interval,
            department_keys=department_keys,
            department_rate=department_rate,
            department_interval_days=department_interval,
            global_rate=global_rate,
            global_interval_days=global_interval,
        )

    def encode(
        self,
        product_ids: NDArray[np.str_],
        categories: NDArray[np.str_],
        departments: NDArray[np.str_],
    ) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
        """Codes of products, categories and departments (-1 when the priors do not know them),
        as the columns carry them."""
        return (
            _encode(self.product_keys, np.asarray(product_ids, dtype=np.str_)),
            _encode(self.category_keys, _normalized(categories)),
            _encode(self.department_keys, _normalized(departments)),
        )

    def features(
        self,
        product_code: NDArray[np.int64],
        category_code: NDArray[np.int64],
        department_code: NDArray[np.int64],
    ) -> dict[str, NDArray[np.float64]]:
        """The PRIOR_FEATURES of each row, each falling back to the next coarser level."""
        department_rate = _pick(self.department_rate, department_code, self.global_rate)
        department_interval = _pick(
            self.department_interval_days, department_code, self.global_interval_days
        )
        category_rate = _pick(self.category_rate, category_code, department_rate)
        category_interval = _pick(self.category_interval_days, category_code, department_interval)
        return {
            "product_rate": _pick(self.product_rate, product_code, category_rate),
            "category_rate": category_rate,
            "department_rate": department_rate,
            "product_interval_days": _pick(
                self.product_interval_days, product_code, category_interval
            ),
            "category_interval_days": category_interval,
        }


def feature_matrix(
    columns: Columns, priors: Priors, rows: NDArray[np.integer] | None = None
) -> NDArray[np.float64]:
    """One row of FEATURE_NAMES per column row (or per selected row: customer features still
    see all of the customer's rows); see the module doc for both lists."""
    selected = slice(None) if rows is None else np.asarray(rows, dtype=np.int64)
    offsets = np.asarray(columns["customer_offsets"], dtype=np.int64)
    n_rows = int(offsets[-1])
    customers = offsets.size - 1
    row_customer = np.repeat(np.arange(customers), np.diff(offsets))
    as_of = np.asarray(columns["as_of_epoch_day"], dtype=np.int64)
    count = np.asarray(columns["purchase_days"], dtype=np.float64)
    last_day = np.asarray(columns["last_purchase_epoch_day"], dtype=np.int64)
    days_since = np.asarray(columns["days_since_last_purchase"], dtype=np.float64)
    interval_offsets = np.asarray(columns["interval_offsets"], dtype=np.int64)
    intervals = np.rint(np.asarray(columns["intervals_days"], dtype=np.float64)).astype(np.int64)

    # Every purchase day of every row: the last one, and before it last - (sum of later gaps).
    interval_row = np.repeat(np.arange(n_rows), np.diff(interval_offsets))
    prefix = np.zeros(intervals.size + 1, dtype=np.int64)
    np.cumsum(intervals, out=prefix[1:])
    earlier_days = last_day[interval_row] - (
        prefix[interval_offsets[1:]][interval_row] - prefix[:-1]
    )
    first_day = last_day - (prefix[interval_offsets[1:]] - prefix[interval_offsets[:-1]])

    def purchases_since(since: NDArray[np.int64]) -> NDArray[np.float64]:
        """Purchase days of each row on or after its `since` day."""
        earlier = np.bincount(
            interval_row, weights=earlier_days >= since[interval_row], minlength=n_rows
        )
        return np.asarray(earlier + (last_day >= since), dtype=np.float64)

    def recent(window: int) -> NDArray[np.float64]:
        """Purchase days of each row in [as_of - window, as_of)."""
        return purchases_since(as_of - window)

    # The customer's shopping days: the union of the purchase days of all of its rows.
    all_days = np.concatenate([earlier_days, last_day])
    all_customer = np.concatenate([row_customer[interval_row], row_customer])
    span = int(all_days.max(initial=0)) + 1
    trips = np.unique(all_customer * span + all_days)
    trip_customer, trip_day = trips // span, trips % span
    customer_trips = np.bincount(trip_customer, minlength=customers).astype(np.float64)
    customer_first = np.full(customers, np.iinfo(np.int64).max)
    np.minimum.at(customer_first, trip_customer, trip_day)
    customer_last = np.zeros(customers, dtype=np.int64)
    np.maximum.at(customer_last, trip_customer, trip_day)
    customer_as_of = np.zeros(customers, dtype=np.int64)
    customer_as_of[row_customer] = as_of
    recent_trip = trip_day >= customer_as_of[trip_customer] - 28
    customer_trips_28 = np.bincount(trip_customer, weights=recent_trip, minlength=customers)
    recent_trip_56 = trip_day >= customer_as_of[trip_customer] - 56
    customer_trips_56 = np.bincount(trip_customer, weights=recent_trip_56, minlength=customers)
    history_days = np.maximum(customer_as_of - customer_first, 1).astype(np.float64)
    customer_products = np.diff(offsets).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        customer_gap = np.where(
            customer_trips > 1,
            (customer_last - customer_first) / np.maximum(customer_trips - 1, 1),
            np.nan,
        )

    def per_row(values: NDArray[Any]) -> NDArray[np.float64]:
        return np.asarray(values, dtype=np.float64)[row_customer]

    # Where the row's purchases fall among its customer's shopping days (trips).
    trip_start = np.searchsorted(trips, np.arange(customers + 1) * span)
    trips_since_last = trip_start[row_customer + 1] - np.searchsorted(
        trips, row_customer * span + last_day, side="right"
    )

    def share_of_last_trips(n: int) -> NDArray[np.float64]:
        """Share of the customer's last n shopping days (or all, if fewer) with the product."""
        if not trips.size:
            return np.zeros(n_rows)
        nth = np.minimum(np.maximum(trip_start[1:] - n, trip_start[:-1]), trips.size - 1)
        since = trip_day[nth][row_customer]
        return purchases_since(since) / np.minimum(per_row(customer_trips), n)

    gap_count = np.diff(interval_offsets).astype(np.float64)
    short_gaps = np.bincount(interval_row, weights=intervals <= SHORT_GAP_DAYS, minlength=n_rows)
    longest_gap = np.zeros(n_rows)
    np.maximum.at(longest_gap, interval_row, intervals.astype(np.float64))
    customer_short_gaps = np.bincount(row_customer, weights=short_gaps, minlength=customers)
    customer_purchases = np.bincount(row_customer, weights=count, minlength=customers)

    def defined(name: str, minimum_days: int) -> NDArray[np.float64]:
        values = np.asarray(columns[name], dtype=np.float64)
        return np.where(count >= minimum_days, values, np.nan)

    median = defined("median_interval_days", 2)
    last_interval = np.full(n_rows, np.nan)
    has_gap = np.diff(interval_offsets) > 0
    last_interval[has_gap] = intervals[interval_offsets[1:][has_gap] - 1]
    purchases_56 = recent(56)
    price = np.asarray(columns["unit_price_usd"], dtype=np.float64)
    paid = np.asarray(columns["mean_unit_price_usd"], dtype=np.float64)
    prior = priors.features(
        np.asarray(columns["product_code"], dtype=np.int64),
        np.asarray(columns["category_code"], dtype=np.int64),
        np.asarray(columns["department_code"], dtype=np.int64),
    )
    trips_56_row = per_row(customer_trips_56)
    with np.errstate(divide="ignore", invalid="ignore"):
        features = {
            "purchase_days": count,
            "cold_start": (count < COLD_START_PURCHASE_DAYS).astype(np.float64),
            "mean_interval_days": defined("mean_interval_days", 2),
            "median_interval_days": median,
            "std_interval_days": defined("std_interval_days", 3),
            "coefficient_of_variation": defined("coefficient_of_variation", 3),
            "trend_slope_days": defined("trend_slope_days", 4),
            "last_interval_days": last_interval,
            "days_since_last_purchase": days_since,
            "overdue_ratio": days_since / median,
            "due_in_days": median - days_since,
            "recency_weight": np.asarray(columns["recency_weight"], dtype=np.float64),
            "tenure_days": (as_of - first_day).astype(np.float64),
            "trips_since_last_purchase": trips_since_last.astype(np.float64),
            "share_last_5_trips": share_of_last_trips(5),
            "share_last_10_trips": share_of_last_trips(10),
            "short_gap_share": np.where(gap_count > 0, short_gaps / gap_count, np.nan),
            "longest_interval_days": np.where(gap_count > 0, longest_gap, np.nan),
            "purchases_28d": recent(28),
            "purchases_56d": purchases_56,
            "purchases_91d": recent(91),
            "rate_per_28d": 28.0 * count / np.maximum(per_row(history_days), 28.0),
            "trip_share": count / per_row(customer_trips),
            "trip_share_56d": np.where(trips_56_row > 0, purchases_56 / trips_56_row, 0.0),
            "quantity_per_purchase": np.asarray(columns["total_quantity"], np.float64) / count,
            "quantity_per_day": np.asarray(columns["quantity_per_day"], dtype=np.float64),
            "unit_price_usd": np.where(price > 0, price, paid),
            **prior,
            "customer_trips": per_row(customer_trips),
            "customer_trips_28d": per_row(customer_trips_28),
            "customer_days_since_trip": per_row(customer_as_of - customer_last),
            "customer_history_days": per_row(history_days),
            "customer_products": per_row(customer_products),
            "customer_gap_days": per_row(customer_gap),
            "customer_short_gap_share": per_row(customer_short_gaps / customer_purchases),
        }
    matrix = np.empty((features["purchase_days"][selected].shape[0], len(FEATURE_NAMES)))
    for column, name in enumerate(FEATURE_NAMES):
        matrix[:, column] = features[name][selected]
    return matrix


def columns_from_table(
    table: ItemStatsTable,
    as_of_epoch_days: NDArray[np.integer] | Sequence[int],
    product_code: NDArray[np.int64],
    category_code: NDArray[np.int64],
    department_code: NDArray[np.int64],
    unit_price_usd: NDArray[np.float64],
) -> dict[str, NDArray[Any]]:
    """Columns of every row of a statistics table (training, evaluation, batch).

    as_of_epoch_days has one day per customer of the table; the codes (Priors.encode) and
    unit_price_usd one value per row, for the product of that row."""
    offsets = table.customer_offsets
    as_of = np.asarray(as_of_epoch_days, dtype=np.int64)
    columns: dict[str, NDArray[Any]] = {
        name: np.asarray(getattr(table, name)) for name in STATISTICS_FIELDS
    }
    columns.update(
        customer_offsets=offsets,
        as_of_epoch_day=np.repeat(as_of, np.diff(offsets)),
        intervals_days=table.intervals_days,
        interval_offsets=table.interval_offsets,
        product_code=np.asarray(product_code, dtype=np.int64),
        category_code=np.asarray(category_code, dtype=np.int64),
        department_code=np.asarray(department_code, dtype=np.int64),
        unit_price_usd=np.asarray(unit_price_usd, dtype=np.float64),
    )
    return columns


def columns_from_analysis(
    analysis: analysis_pb2.HistoryAnalysis,
    products: Mapping[str, product_pb2.Product],
    priors: Priors,
) -> dict[str, NDArray[Any]]:
    """Columns of one shopper's analysis as the recommendation service receives it; `products`
    maps product_id to the Product message (an unknown id gets no category and no price)."""
    items = analysis.items
    columns: dict[str, NDArray[Any]] = {
        name: np.array([getattr(item, name) for item in items], dtype=np.float64)
        for name in STATISTICS_FIELDS
    }
    counts = [len(item.intervals_days) for item in items]
    missing = product_pb2.Product()
    described = [products.get(item.product_id, missing) for item in items]
    product_code, category_code, department_code = priors.encode(
        np.array([item.product_id for item in items], dtype=np.str_),
        np.array([p.category for p in described], dtype=np.str_),
        np.array([p.department for p in described], dtype=np.str_),
    )
    columns.update(
        customer_offsets=np.array([0, len(items)], dtype=np.int64),
        as_of_epoch_day=np.full(len(items), analysis.as_of_epoch_day, dtype=np.int64),
        intervals_days=np.array(
            [gap for item in items for gap in item.intervals_days], dtype=np.float64
        ),
        interval_offsets=np.concatenate([[0], np.cumsum(counts, dtype=np.int64)]),
        product_code=product_code,
        category_code=category_code,
        department_code=department_code,
        unit_price_usd=np.array([p.unit_price_usd for p in described], dtype=np.float64),
    )
    return columns
