"""Repurchase statistics: hand-computed cases, batches, and properties of random histories."""

from __future__ import annotations

import math
import statistics as pystats
from collections.abc import Sequence
from itertools import pairwise
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import linregress

from pantree_common.domain.history import History, Product
from services.frequency import statistics as freq
from services.frequency.statistics import ItemStatsTable, analyze, to_protos

AS_OF = 1_000


def _products(count: int) -> list[Product]:
    return [Product(f"p-{i:03d}", f"Product {i}", unit_price_usd=1.0 + i) for i in range(count)]


def _history(days_by_product: Sequence[Sequence[int]], customer_id: str = "c") -> History:
    """A history buying product i on each day of days_by_product[i], one unit a time."""
    index = [i for i, days in enumerate(days_by_product) for _ in days]
    days = [day for product_days in days_by_product for day in product_days]
    return History.build(customer_id, _products(len(days_by_product)), index, days)


def _one(days: Sequence[int], as_of: int | None = None, min_purchases: int = 2) -> dict[str, Any]:
    """Statistics of a single-product history (analysed on its last day by default)."""
    table = analyze([_history([days])], [max(days) if as_of is None else as_of], min_purchases)
    assert table.product_index.size == 1
    return _rows(table, 0)[0]


_ROW_FIELDS = (
    "purchase_days",
    "mean_interval_days",
    "median_interval_days",
    "std_interval_days",
    "coefficient_of_variation",
    "trend_slope_days",
    "trend_p_value",
    "days_since_last_purchase",
    "recency_weight",
    "confidence",
    "meets_minimum_purchases",
    "last_purchase_epoch_day",
    "next_purchase_epoch_day",
    "quantity_per_day",
    "total_quantity",
    "mean_unit_price_usd",
)


def _rows(table: ItemStatsTable, customer: int) -> list[dict[str, Any]]:
    """The rows of one customer as dicts, intervals included, for whole-table comparisons."""
    start, stop = table.customer_offsets[customer], table.customer_offsets[customer + 1]
    rows = []
    for row in range(start, stop):
        values = {name: getattr(table, name)[row].item() for name in _ROW_FIELDS}
        values["product_index"] = int(table.product_index[row])
        begin, end = table.interval_offsets[row], table.interval_offsets[row + 1]
        values["intervals"] = table.intervals_days[begin:end].tolist()
        rows.append(values)
    return rows


def test_perfectly_periodic_rhythm_has_no_spread_and_no_trend() -> None:
    row = _one([0, 7, 14, 21, 28])
    assert row["intervals"] == [7.0, 7.0, 7.0, 7.0]
    assert row["purchase_days"] == 5
    assert row["mean_interval_days"] == 7.0
    assert row["median_interval_days"] == 7.0
    assert row["std_interval_days"] == 0.0
    assert row["coefficient_of_variation"] == 0.0
    assert row["trend_slope_days"] == 0.0
    assert row["trend_p_value"] == 1.0
    assert row["recency_weight"] == 1.0


def test_shrinking_gaps_give_an_exact_negative_slope() -> None:
    row = _one([0, 10, 18, 24, 28])
    assert row["intervals"] == [10.0, 8.0, 6.0, 4.0]
    assert row["trend_slope_days"] == -2.0
    assert row["trend_p_value"] == 0.0, "an exact line is a certain trend"
    assert row["mean_interval_days"] == 7.0


def test_trend_significance_matches_a_textbook_regression() -> None:
    days = [0, 9, 16, 25, 30, 38, 41, 46]
    row = _one(days)
    gaps = np.diff(days)
    fit = linregress(np.arange(gaps.size), gaps)
    assert row["trend_slope_days"] == pytest.approx(fit.slope)
    assert row["trend_p_value"] == pytest.approx(fit.pvalue)
    assert _one([0, 7, 15])["trend_p_value"] == 1.0, "two intervals cannot show a trend"


def test_irregular_intervals_match_hand_computed_moments() -> None:
    row = _one([0, 2, 7, 16, 19])
    # Intervals 2, 5, 9, 3: mean 4.75, sorted 2 3 5 9 -> median 4, squared deviations sum 28.75.
    assert row["intervals"] == [2.0, 5.0, 9.0, 3.0]
    assert row["mean_interval_days"] == 4.75
    assert row["median_interval_days"] == 4.0
    assert row["std_interval_days"] == pytest.approx(math.sqrt(28.75 / 3))
    assert row["coefficient_of_variation"] == pytest.approx(math.sqrt(28.75 / 3) / 4.75)
    # Σxy = 32, Σx = 6, Σy = 19, m = 4: (4*32 - 6*19) / (16*15/12) = 0.7.
    assert row["trend_slope_days"] == pytest.approx(0.7)


def test_odd_number_of_intervals_takes_the_middle_one_as_median() -> None:
    assert _one([0, 2, 7, 16])["median_interval_days"] == 5.0


def test_two_purchase_days_have_a_mean_but_no_spread_or_trend() -> None:
    row = _one([3, 13])
    assert (row["mean_interval_days"], row["median_interval_days"]) == (10.0, 10.0)
    assert (row["std_interval_days"], row["trend_slope_days"]) == (0.0, 0.0)


def test_two_intervals_have_a_spread_but_no_trend() -> None:
    row = _one([0, 4, 12])
    assert row["std_interval_days"] == pytest.approx(math.sqrt(8.0))
    assert row["trend_slope_days"] == 0.0


def test_more_observations_give_higher_confidence_at_equal_regularity() -> None:
    scores = [_one(list(range(0, 7 * n, 7)))["confidence"] for n in (2, 3, 5, 8, 13, 21)]
    assert all(0 < low < high <= 100 for low, high in pairwise(scores))


def test_periodic_rhythm_beats_an_irregular_one_of_the_same_count() -> None:
    periodic = _one([0, 7, 14, 21, 28, 35])["confidence"]
    irregular = _one([0, 3, 14, 18, 29, 35])["confidence"]
    drifting = _one([0, 10, 19, 26, 31, 35])["confidence"]
    assert periodic > irregular > 0
    assert periodic > drifting > 0


def test_single_purchase_has_zero_confidence_and_misses_the_minimum() -> None:
    row = _one([40], as_of=50)
    assert row["purchase_days"] == 1
    assert row["intervals"] == []
    assert row["confidence"] == 0.0
    assert row["meets_minimum_purchases"] is False
    assert row["mean_interval_days"] == row["median_interval_days"] == 0.0
    assert row["next_purchase_epoch_day"] == 0.0
    assert row["quantity_per_day"] == pytest.approx(1 / freq.DEFAULT_INTERVAL_DAYS)
    assert row["days_since_last_purchase"] == 10.0


def test_single_purchase_recency_decays_against_the_default_interval() -> None:
    assert _one([0], as_of=30)["recency_weight"] == 1.0
    assert _one([0], as_of=60)["recency_weight"] == pytest.approx(math.exp(-1.0))


def test_confidence_is_zero_below_the_minimum_and_positive_at_it() -> None:
    days = [0, 7, 14, 21]
    at_minimum = _one(days, min_purchases=4)
    assert at_minimum["meets_minimum_purchases"] is True
    assert at_minimum["confidence"] > 0
    below = _one(days, min_purchases=5)
    assert below["meets_minimum_purchases"] is False
    assert below["confidence"] == 0.0


def test_same_day_events_merge_into_one_purchase_day() -> None:
    product = Product("p-milk", "Milk", unit_price_usd=4.0)
    history = History.build(
        "c",
        [product],
        [0, 0, 0, 0],
        [10, 10, 20, 30],
        quantity=[1.0, 3.0, 2.0, 2.0],
        unit_price_usd=[2.0, 4.0, 5.0, 1.0],
    )
    table = analyze([history], [30], 2)
    assert table.purchase_days.tolist() == [3]
    assert table.intervals_days.tolist() == [10.0, 10.0]
    assert table.total_quantity.tolist() == [8.0]
    # Quantity-weighted over every event: (2 + 12 + 10 + 2) / 8.
    assert table.mean_unit_price_usd[0] == pytest.approx(26 / 8)
    # 8 units over a 20-day span plus one 10-day interval.
    assert table.quantity_per_day[0] == pytest.approx(8 / 30)


def test_recency_weight_is_one_on_schedule_and_decays_when_overdue() -> None:
    days = [0, 10, 20, 30]
    assert _one(days, as_of=30)["recency_weight"] == 1.0
    assert _one(days, as_of=40)["recency_weight"] == 1.0
    overdue = _one(days, as_of=50)
    assert overdue["days_since_last_purchase"] == 20.0
    assert overdue["recency_weight"] == pytest.approx(math.exp(-1.0))
    assert overdue["confidence"] < _one(days, as_of=40)["confidence"]


def test_purchase_a_day_after_the_analysis_date_counts_as_today() -> None:
    row = _one([0, 7, 14], as_of=13)
    assert row["days_since_last_purchase"] == 0.0
    assert row["recency_weight"] == 1.0


def test_next_purchase_adds_the_mean_interval_rounded_half_up() -> None:
    assert _one([100, 103, 107])["next_purchase_epoch_day"] == 111  # mean 3.5 -> 4
    assert _one([100, 107, 114])["next_purchase_epoch_day"] == 121
    row = _one([100, 107, 114])
    assert row["last_purchase_epoch_day"] == 114


def test_rows_are_sorted_by_confidence_then_product_id() -> None:
    products = [Product(pid, pid) for pid in ("p-z", "p-b", "p-y", "p-a", "p-x")]
    index = [0, 0, 0, 0, 1, 2, 3, 3, 3, 4]
    days = [0, 7, 14, 21, 5, 6, 0, 9, 21, 8]
    history = History.build("c", products, index, days)
    table = analyze([history], [21], 2)
    ids = [products[i].product_id for i in table.product_index]
    assert ids == ["p-z", "p-a", "p-b", "p-x", "p-y"]
    assert table.confidence[0] > table.confidence[1] > 0
    assert table.confidence[2:].tolist() == [0.0, 0.0, 0.0]


def test_a_batch_equals_each_history_analysed_alone() -> None:
    rng = np.random.default_rng(3)
    histories = []
    for c in range(12):
        events = int(rng.integers(0, 60))
        count = int(rng.integers(1, 9))
        histories.append(
            History.build(
                f"c{c}",
                _products(count),
                rng.integers(0, count, events),
                np.sort(rng.integers(0, 200, events)),
                rng.uniform(0.5, 3.0, events),
            )
        )
    as_of = [int(rng.integers(200, 260)) for _ in histories]
    batch = analyze(histories, as_of, 3)
    assert batch.customer_offsets.size == len(histories) + 1
    for c, history in enumerate(histories):
        alone = analyze([history], [as_of[c]], 3)
        assert _rows(batch, c) == _rows(alone, 0)


def test_empty_batch_and_empty_history() -> None:
    empty = analyze([], [], 2)
    assert empty.customer_offsets.tolist() == [0]
    assert empty.product_index.size == empty.intervals_days.size == 0
    assert empty.interval_offsets.tolist() == [0]
    histories = [History.build("quiet", _products(2), [], []), _history([[1, 8]])]
    table = analyze(histories, [10, 10], 2)
    assert table.customer_offsets.tolist() == [0, 0, 1]
    quiet, busy = to_protos(histories, table, [10, 10], 2)
    assert (len(quiet.items), quiet.event_count, len(busy.items)) == (0, 0, 1)


def test_one_analysis_day_is_needed_per_history() -> None:
    with pytest.raises(ValueError, match="one analysis day per history"):
        analyze([_history([[1]])], [1, 2], 2)


def test_to_protos_carries_every_field() -> None:
    histories = [_history([[0, 7, 14, 21], [3]], "alice"), _history([[1, 5, 20]], "bob")]
    as_of = [25, 30]
    table = analyze(histories, as_of, 2)
    analyses = to_protos(histories, table, as_of, 2)
    assert [a.customer_id for a in analyses] == ["alice", "bob"]
    assert [a.as_of_epoch_day for a in analyses] == as_of
    assert [a.event_count for a in analyses] == [5, 3]
    assert all(a.min_purchases == 2 for a in analyses)
    for c, analysis in enumerate(analyses):
        rows = _rows(table, c)
        assert len(analysis.items) == len(rows)
        for item, row in zip(analysis.items, rows, strict=True):
            assert item.product_id == histories[c].products[row["product_index"]].product_id
            assert list(item.intervals_days) == row["intervals"]
            for name in _ROW_FIELDS:
                assert getattr(item, name) == row[name], name


def test_stable_sort_falls_back_to_argsort_when_packing_would_overflow() -> None:
    keys = np.array([5, 1, 5, 0, 1, 5], dtype=np.int64)
    expected = np.argsort(keys, kind="stable").tolist()
    for bound in (6, 2**62):
        order, sorted_keys = freq._sort_stably(keys, bound)
        assert order.tolist() == expected
        assert sorted_keys.tolist() == [0, 1, 1, 5, 5, 5]


# --- properties of random valid histories -------------------------------------------------------


@st.composite
def histories(draw: st.DrawFn) -> tuple[History, int]:
    """A valid history (days sorted, positive quantities) and an analysis day not before it."""
    product_count = draw(st.integers(1, 6))
    events = draw(
        st.lists(
            st.tuples(
                st.integers(0, product_count - 1),
                st.integers(0, 150),
                st.floats(0.1, 10.0),
                st.floats(0.0, 50.0),
            ),
            max_size=40,
        )
    )
    events.sort(key=lambda event: event[1])
    products = [
        Product(f"id-{draw(st.integers(0, 10**6))}-{i}", f"P{i}") for i in range(product_count)
    ]
    history = History.build(
        f"c-{draw(st.integers(0, 99))}",
        products,
        [e[0] for e in events],
        [e[1] for e in events],
        [e[2] for e in events],
        [e[3] for e in events],
    )
    last_day = max((e[1] for e in events), default=0)
    return history, draw(st.integers(last_day - 1, last_day + 500))


def _reference_moments(intervals: list[float]) -> tuple[float, float, float, float]:
    """Mean, median, sample std and least-squares slope computed the slow, obvious way."""
    if not intervals:
        return 0.0, 0.0, 0.0, 0.0
    std = pystats.stdev(intervals) if len(intervals) >= 2 else 0.0
    slope = 0.0
    if len(intervals) >= 3:
        xs = range(len(intervals))
        x_mean, y_mean = pystats.fmean(xs), pystats.fmean(intervals)
        slope = sum((x - x_mean) * (y - y_mean) for x, y in zip(xs, intervals, strict=True)) / sum(
            (x - x_mean) ** 2 for x in xs
        )
    return pystats.fmean(intervals), pystats.median(intervals), std, slope


@settings(max_examples=150, deadline=None)
@given(st.lists(histories(), min_size=1, max_size=4), st.integers(2, 6))
def test_random_histories_satisfy_the_documented_ranges(
    batch: list[tuple[History, int]], min_purchases: int
) -> None:
    histories_ = [history for history, _ in batch]
    as_of = [day for _, day in batch]
    table = analyze(histories_, as_of, min_purchases)

    assert np.all((table.confidence >= 0) & (table.confidence <= 100))
    assert np.all((table.recency_weight >= 0) & (table.recency_weight <= 1))
    assert np.all((table.trend_p_value >= 0) & (table.trend_p_value <= 1))
    assert np.all(table.coefficient_of_variation >= 0)
    assert np.all(table.days_since_last_purchase >= 0)
    assert np.all(table.intervals_days >= 1)
    assert np.array_equal(np.diff(table.interval_offsets), table.purchase_days - 1)
    assert np.array_equal(table.meets_minimum_purchases, table.purchase_days >= min_purchases)
    assert np.all(table.confidence[~table.meets_minimum_purchases] == 0)
    distinct_purchase_days = sum(
        len(set(zip(h.product_index.tolist(), h.epoch_day.tolist(), strict=True)))
        for h in histories_
    )
    assert int(table.purchase_days.sum()) == distinct_purchase_days

    for c, history in enumerate(histories_):
        rows = _rows(table, c)
        assert len(rows) == len(set(history.product_index.tolist()))
        ordering = [
            (-r["confidence"], history.products[r["product_index"]].product_id) for r in rows
        ]
        assert ordering == sorted(ordering)
        for row in rows:
            mask = history.product_index == row["product_index"]
            days = sorted(set(history.epoch_day[mask].tolist()))
            intervals = [float(b - a) for a, b in pairwise(days)]
            assert row["intervals"] == intervals
            assert row["last_purchase_epoch_day"] == days[-1]
            assert row["total_quantity"] == pytest.approx(history.quantity[mask].sum())
            mean, median, std, slope = _reference_moments(intervals)
            assert row["mean_interval_days"] == pytest.approx(mean)
            assert row["median_interval_days"] == pytest.approx(median)
            assert row["std_interval_days"] == pytest.approx(std, abs=1e-9)
            assert row["trend_slope_days"] == pytest.approx(slope, abs=1e-9)
        assert rows == _rows(analyze([history], [as_of[c]], min_purchases), 0)
