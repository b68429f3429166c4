"""Repurchase statistics of every (customer, product) pair of a batch, computed all at once.

The events of all customers go through one packed sort and a handful of segment reductions, so a
batch costs a few passes over its event columns: there is no Python loop per pair or per event.

Confidence (0-100) multiplies four factors, each in [0, 1] and each 1 at its best:

    confidence = 100 * evidence * consistency * stability * recency_weight
    evidence    = 1 - exp(-intervals / 4)                 more purchase days, saturating
    consistency = exp(-coefficient_of_variation)          regular gaps
    stability   = exp(-2 * |trend_slope_days| / mean)     gaps neither shrinking nor growing
    recency_weight = exp(-max(days_since_last - mean, 0) / mean)   1 while on schedule

It is 0 when the pair has fewer purchase days than the minimum, and rounded to 4 decimals so that
equal scores compare equal and ties are settled by product_id. At equal regularity more
observations give a higher score; a perfectly periodic rhythm (CV 0, slope 0) beats an irregular
one of the same count and recency.

Other derived fields, as the proto documents them: same-day events of a product are one purchase
day (quantities summed, unit price quantity-weighted over all events); next_purchase_epoch_day is
the last purchase day plus the mean interval rounded half up; quantity_per_day is total units over
(span + mean interval), the span being counted up to the day the next purchase is due. A product
with a single purchase day has no rhythm of its own: its recency and units per day are computed as
if it were rebought every DEFAULT_INTERVAL_DAYS (units / 30).

All columns are one numpy array over every row of the batch; see ItemStatsTable for the layout.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from pantree.domain.v1 import analysis_pb2
from scipy.stats import t as student_t

from pantree_common.domain.history import History

DEFAULT_INTERVAL_DAYS = 30.0
# Intervals at which evidence reaches 1 - 1/e (63 %); it is 95 % at three times as many.
EVIDENCE_SCALE_INTERVALS = 4.0
# A slope of half the mean interval per interval costs a factor 1/e.
TREND_PENALTY = 2.0
CONFIDENCE_DECIMALS = 4
# Confidence in integer steps of 10**-CONFIDENCE_DECIMALS, the unit the rows are sorted in.
_CONFIDENCE_STEPS = 100 * 10**CONFIDENCE_DECIMALS
_INT64_LIMIT = 2**63


@dataclass(frozen=True, eq=False)
class ItemStatsTable:
    """One row per (customer, product) pair; rows grouped by customer in input order; inside a
    customer, rows sorted by confidence desc then product_id asc."""

    customer_offsets: NDArray[np.int64]
    """Length n_customers + 1: rows of customer c are customer_offsets[c]:customer_offsets[c+1]."""
    product_index: NDArray[np.int32]
    """Index into histories[c].products."""
    purchase_days: NDArray[np.int32]
    interval_offsets: NDArray[np.int64]
    """Length n_rows + 1: intervals of row r are intervals_days[interval_offsets[r]:...[r+1]]."""
    intervals_days: NDArray[np.float64]
    mean_interval_days: NDArray[np.float64]
    median_interval_days: NDArray[np.float64]
    std_interval_days: NDArray[np.float64]
    coefficient_of_variation: NDArray[np.float64]
    trend_slope_days: NDArray[np.float64]
    trend_p_value: NDArray[np.float64]
    days_since_last_purchase: NDArray[np.int32]
    recency_weight: NDArray[np.float64]
    confidence: NDArray[np.float64]
    meets_minimum_purchases: NDArray[np.bool_]
    last_purchase_epoch_day: NDArray[np.int32]
    next_purchase_epoch_day: NDArray[np.int32]
    quantity_per_day: NDArray[np.float64]
    total_quantity: NDArray[np.float64]
    mean_unit_price_usd: NDArray[np.float64]


def _offsets(counts: NDArray[np.int64]) -> NDArray[np.int64]:
    """Start of each segment of the given sizes, plus the total at the end."""
    return np.concatenate(([0], np.cumsum(counts))).astype(np.int64, copy=False)


def _segment_ids(offsets: NDArray[np.int64]) -> NDArray[np.int64]:
    """For contiguous segments given by offsets, the segment of each item."""
    return np.repeat(np.arange(offsets.size - 1, dtype=np.int64), np.diff(offsets))


def _segment_sums(values: NDArray[np.int64], offsets: NDArray[np.int64]) -> NDArray[np.int64]:
    """Exact integer sum of each contiguous segment, from one running total."""
    running = np.zeros(values.size + 1, dtype=np.int64)
    np.cumsum(values, out=running[1:])
    return running[offsets[1:]] - running[offsets[:-1]]


def _sums_by_key(
    keys: NDArray[np.int64], weights: NDArray[np.float64], key_bound: int
) -> NDArray[np.float64]:
    """Sum of the weights of each integer key in [0, key_bound), in any item order."""
    return np.bincount(keys, weights=weights, minlength=key_bound).astype(np.float64, copy=False)


def _sort_stably(
    keys: NDArray[np.int64], key_bound: int
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Stable argsort of integer keys in [0, key_bound), and the sorted keys.

    Sorting the values (key << bits) | index and splitting them again is several times faster
    than a stable argsort, which remains the fallback when those values could overflow int64.
    """
    bits = keys.size.bit_length()
    if key_bound << bits >= _INT64_LIMIT:
        order = np.argsort(keys, kind="stable").astype(np.int64, copy=False)
        return order, keys[order]
    packed = np.sort((keys << bits) | np.arange(keys.size))
    return packed & ((1 << bits) - 1), packed >> bits


def _group_starts(*columns: NDArray[np.int64]) -> NDArray[np.int64]:
    """Indices where a run of items equal in every column begins."""
    starts = np.zeros(columns[0].size, dtype=np.bool_)
    starts[:1] = True
    for column in columns:
        starts[1:] |= column[1:] != column[:-1]
    return np.flatnonzero(starts).astype(np.int64, copy=False)


def _product_id_ranks(histories: Sequence[History]) -> NDArray[np.int64]:
    """Rank of each product's id among its history's products, all histories concatenated.

    Histories that share one products tuple (a common catalog) share the ranking work.
    """
    ranks_by_tuple: dict[int, NDArray[np.int64]] = {}
    parts = [np.empty(0, dtype=np.int64)]
    for history in histories:
        ranks = ranks_by_tuple.get(id(history.products))
        if ranks is None:
            ids = [product.product_id for product in history.products]
            ranks = np.empty(len(ids), dtype=np.int64)
            ranks[sorted(range(len(ids)), key=ids.__getitem__)] = np.arange(len(ids))
            ranks_by_tuple[id(history.products)] = ranks
        parts.append(ranks)
    return np.concatenate(parts)


def _slope_p_value(
    count: NDArray[np.int64], slope: NDArray[np.float64], variance_scaled: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Two-sided p-value of each slope (Student's t, m - 2 degrees of freedom), 1 below 3
    intervals. With m intervals, Sxx = m(m²-1)/12, Syy = variance_scaled / m and the residual
    sum of squares is Syy - slope² Sxx; an exact line has none (p 0 if it slopes, 1 if flat)."""
    m = count.astype(np.float64)
    tested = count >= 3
    sxx = m * (m * m - 1.0) / 12.0
    residual = np.maximum(variance_scaled / np.maximum(m, 1.0) - slope * slope * sxx, 0.0)
    standard_error = np.sqrt(residual / np.maximum(m - 2.0, 1.0) / np.maximum(sxx, 1.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.abs(slope) / standard_error
    p_value = 2.0 * student_t.sf(np.where(np.isfinite(t), t, 0.0), np.maximum(m - 2.0, 1.0))
    exact = tested & (standard_error == 0.0)
    p_value = np.where(exact, np.where(slope != 0.0, 0.0, 1.0), p_value)
    return np.where(tested, np.clip(p_value, 0.0, 1.0), 1.0)


def analyze(
    histories: Sequence[History],
    as_of_epoch_days: NDArray[np.int32] | Sequence[int],
    min_purchases: int,
) -> ItemStatsTable:
    """Statistics of every product of every history, each customer analysed on its own date."""
    customers = len(histories)
    as_of = np.asarray(as_of_epoch_days, dtype=np.int64)
    if as_of.shape != (customers,):
        raise ValueError(f"need one analysis day per history ({customers}), got {as_of.shape}")
    index_parts: list[NDArray[np.integer]] = [h.product_index for h in histories]
    event_counts = np.fromiter(map(len, index_parts), np.int64, customers)
    product_counts = np.fromiter((len(h.products) for h in histories), np.int64, customers)
    product_base = _offsets(product_counts)
    product_index = np.concatenate([np.empty(0, np.int64), *index_parts], dtype=np.int64)
    days = np.concatenate(
        [np.empty(0, np.int64), *(h.epoch_day for h in histories)], dtype=np.int64
    )
    quantity = np.concatenate([np.empty(0), *(h.quantity for h in histories)], dtype=np.float64)
    price = np.concatenate([np.empty(0), *(h.unit_price_usd for h in histories)], dtype=np.float64)

    # Number every (customer, product) pair in (customer, product_id) order and sort the events
    # by it; each customer's events stay in day order because the sort is stable.
    pair_number = _product_id_ranks(histories) + np.repeat(product_base[:-1], product_counts)
    event_pair = pair_number[np.repeat(product_base[:-1], event_counts) + product_index]
    pairs_bound = int(product_base[-1])
    order, sorted_pair = _sort_stably(event_pair, pairs_bound)
    days = days[order]

    day_starts = _group_starts(sorted_pair, days)
    day_pair, day_value = sorted_pair[day_starts], days[day_starts]
    row_day_starts = _group_starts(day_pair)
    rows = row_day_starts.size
    day_offsets = np.append(row_day_starts, day_starts.size)
    row_event_starts = day_starts[row_day_starts]
    row_pair = day_pair[row_day_starts]
    customer_offsets = np.searchsorted(row_pair, product_base).astype(np.int64, copy=False)
    row_customer = _segment_ids(customer_offsets)

    purchase_days = np.diff(day_offsets)
    total_quantity = _sums_by_key(event_pair, quantity, pairs_bound)[row_pair]
    spend = _sums_by_key(event_pair, quantity * price, pairs_bound)[row_pair]
    first_day = day_value[day_offsets[:-1]]
    last_day = day_value[day_offsets[1:] - 1]
    intervals = np.diff(day_value)[day_pair[1:] == day_pair[:-1]]
    interval_offsets = day_offsets - np.arange(rows + 1)

    # Moments in exact integer arithmetic (intervals are whole days), so a perfectly periodic
    # rhythm gets a std and a slope of exactly 0. With m intervals y at positions x = 0..m-1:
    # sample variance = (m Σy² - (Σy)²) / (m(m-1)), slope = (m Σxy - Σx Σy) / (m Σx² - (Σx)²)
    # where Σy is the span, Σx = m(m-1)/2 and m Σx² - (Σx)² = m²(m²-1)/12.
    count = purchase_days - 1
    count_f = count.astype(np.float64)
    has_rhythm = count > 0
    span = last_day - first_day
    mean = span / np.maximum(count_f, 1.0)
    sum_squares = _segment_sums(intervals * intervals, interval_offsets)
    variance_scaled = (count * sum_squares - span * span).astype(np.float64)
    std = np.where(
        count >= 2, np.sqrt(variance_scaled / np.maximum(count_f * (count_f - 1), 1.0)), 0.0
    )
    # Σxy = Σ(index * y) - row start * Σy, the index counting over the whole batch.
    sum_products = (
        _segment_sums(np.arange(intervals.size) * intervals, interval_offsets)
        - interval_offsets[:-1] * span
    )
    slope_numerator = (count * sum_products - (count * (count - 1) // 2) * span).astype(np.float64)
    slope = np.where(
        count >= 3, 12.0 * slope_numerator / np.maximum(count_f**2 * (count_f**2 - 1.0), 1.0), 0.0
    )
    trend_p_value = _slope_p_value(count, slope, variance_scaled)
    # Sorting (row << bits) | interval sorts each row's intervals in place; it fits int64
    # because intervals are int32 day differences and rows are far fewer than 2**32.
    interval_bits = int(intervals.max(initial=0)).bit_length()
    interval_row = _segment_ids(interval_offsets)
    sorted_intervals = np.sort((interval_row << interval_bits) | intervals) & (
        (1 << interval_bits) - 1
    )
    median = np.zeros(rows)
    starts = interval_offsets[:-1][has_rhythm]
    lower = sorted_intervals[starts + (count[has_rhythm] - 1) // 2]
    upper = sorted_intervals[starts + count[has_rhythm] // 2]
    median[has_rhythm] = (lower + upper) / 2.0

    rhythm = np.where(has_rhythm, mean, DEFAULT_INTERVAL_DAYS)
    variation = std / rhythm
    days_since = np.maximum(as_of[row_customer] - last_day, 0)
    recency = np.exp(-np.maximum(days_since - rhythm, 0.0) / rhythm)
    evidence = -np.expm1(-count_f / EVIDENCE_SCALE_INTERVALS)
    stability = np.exp(-TREND_PENALTY * np.abs(slope) / rhythm)
    meets = purchase_days >= min_purchases
    score = 100.0 * evidence * np.exp(-variation) * stability * recency
    confidence = np.where(meets, np.round(score, CONFIDENCE_DECIMALS), 0.0)
    next_day = np.where(has_rhythm, last_day + np.floor(mean + 0.5).astype(np.int64), 0)
    quantity_per_day = total_quantity / np.where(has_rhythm, span + mean, DEFAULT_INTERVAL_DAYS)

    # Rows are in product_id order; a stable sort by customer then falling confidence keeps that
    # order among equal scores.
    steps = np.rint(confidence * 10**CONFIDENCE_DECIMALS).astype(np.int64)
    row_key = row_customer * (_CONFIDENCE_STEPS + 1) + (_CONFIDENCE_STEPS - steps)
    by_confidence, _ = _sort_stably(row_key, customers * (_CONFIDENCE_STEPS + 1))
    sorted_count = count[by_confidence]
    sorted_offsets = _offsets(sorted_count)
    interval_source = np.arange(intervals.size) + np.repeat(
        interval_offsets[:-1][by_confidence] - sorted_offsets[:-1], sorted_count
    )
    return ItemStatsTable(
        customer_offsets=customer_offsets,
        product_index=product_index[order[row_event_starts]][by_confidence].astype(np.int32),
        purchase_days=purchase_days[by_confidence].astype(np.int32),
        interval_offsets=sorted_offsets,
        intervals_days=intervals[interval_source].astype(np.float64),
        mean_interval_days=mean[by_confidence],
        median_interval_days=median[by_confidence],
        std_interval_days=std[by_confidence],
        coefficient_of_variation=variation[by_confidence],
        trend_slope_days=slope[by_confidence],
        trend_p_value=trend_p_value[by_confidence],
        days_since_last_purchase=days_since[by_confidence].astype(np.int32),
        recency_weight=recency[by_confidence],
        confidence=confidence[by_confidence],
        meets_minimum_purchases=meets[by_confidence],
        last_purchase_epoch_day=last_day[by_confidence].astype(np.int32),
        next_purchase_epoch_day=next_day[by_confidence].astype(np.int32),
        quantity_per_day=quantity_per_day[by_confidence],
        total_quantity=total_quantity[by_confidence],
        mean_unit_price_usd=(spend / total_quantity)[by_confidence],
    )


def to_protos(
    histories: Sequence[History],
    table: ItemStatsTable,
    as_of_epoch_days: NDArray[np.int32] | Sequence[int],
    min_purchases: int,
) -> list[analysis_pb2.HistoryAnalysis]:
    """One HistoryAnalysis per history, items in the table's row order."""
    as_of = np.asarray(as_of_epoch_days, dtype=np.int64).tolist()
    customer_offsets = table.customer_offsets.tolist()
    interval_offsets = table.interval_offsets.tolist()
    intervals = table.intervals_days.tolist()
    product_index = table.product_index.tolist()
    purchase_days = table.purchase_days.tolist()
    mean = table.mean_interval_days.tolist()
    median = table.median_interval_days.tolist()
    std = table.std_interval_days.tolist()
    variation = table.coefficient_of_variation.tolist()
    slope = table.trend_slope_days.tolist()
    slope_p = table.trend_p_value.tolist()
    days_since = table.days_since_last_purchase.tolist()
    recency = table.recency_weight.tolist()
    confidence = table.confidence.tolist()
    meets = table.meets_minimum_purchases.tolist()
    last_day = table.last_purchase_epoch_day.tolist()
    next_day = table.next_purchase_epoch_day.tolist()
    quantity_per_day = table.quantity_per_day.tolist()
    total_quantity = table.total_quantity.tolist()
    unit_price = table.mean_unit_price_usd.tolist()
    analyses = []
    for customer, history in enumerate(histories):
        analysis = analysis_pb2.HistoryAnalysis(
            customer_id=history.customer_id,
            as_of_epoch_day=as_of[customer],
            min_purchases=min_purchases,
            event_count=history.event_count,
        )
        # Adding items in place is faster than building them apart and copying them in.
        add_item = analysis.items.add
        products = history.products
        for row in range(customer_offsets[customer], customer_offsets[customer + 1]):
            add_item(
                product_id=products[product_index[row]].product_id,
                purchase_days=purchase_days[row],
                intervals_days=intervals[interval_offsets[row] : interval_offsets[row + 1]],
                mean_interval_days=mean[row],
                median_interval_days=median[row],
                std_interval_days=std[row],
                coefficient_of_variation=variation[row],
                trend_slope_days=slope[row],
                trend_p_value=slope_p[row],
                days_since_last_purchase=days_since[row],
                recency_weight=recency[row],
                confidence=confidence[row],
                meets_minimum_purchases=meets[row],
                last_purchase_epoch_day=last_day[row],
                next_purchase_epoch_day=next_day[row],
                quantity_per_day=quantity_per_day[row],
                total_quantity=total_quantity[row],
                mean_unit_price_usd=unit_price[row],
            )
        analyses.append(analysis)
    return analyses
