"""The time split: cutoffs, truth, repeat-only truth and Task-B pairs on synthetic data."""

from __future__ import annotations

import math

import numpy as np
import pytest

from services.evaluation import protocol
from tests.unit.evaluation.synthetic import DAY0, build

N_ITEMS = 6


def test_rolling_cutoffs_for_a_year_are_complete_journeys() -> None:
    year = build([(0, 0, 0), (0, 1, 364)])
    offsets = [c - DAY0 for c in protocol.rolling_cutoffs(year)]
    assert offsets == [196, 224, 252, 280, 308, 336]


def test_rolling_cutoffs_keep_the_window_inside_the_data() -> None:
    four_months = build([(0, 0, 0), (0, 1, 119)])
    assert [c - DAY0 for c in protocol.rolling_cutoffs(four_months)] == [84]
    # Offset 56 is in the first half (span 120), 98 + 28 runs past the data.
    assert [c - DAY0 for c in protocol.rolling_cutoffs(four_months, step_days=14)] == [70, 84]
    with pytest.raises(ValueError, match="too few"):
        protocol.rolling_cutoffs(build([(0, 0, 0), (0, 1, 40)]))


def test_cutoff_at_an_offset() -> None:
    year = build([(0, 0, 0), (0, 1, 364)])
    assert protocol.cutoff_at(year, 336) == DAY0 + 336
    with pytest.raises(ValueError, match="cutoff day 340"):
        protocol.cutoff_at(year, 340)
    with pytest.raises(ValueError):
        protocol.cutoff_at(year, 0)


def test_pair_table_merges_same_day_events_and_takes_median_gaps() -> None:
    data = build(
        [(0, 1, 0), (0, 1, 0), (0, 1, 10), (0, 1, 14), (0, 1, 30), (1, 0, 5), (1, 2, 3), (1, 2, 9)],
        n_items=N_ITEMS,
    )
    table = protocol.pair_table(data)
    assert table.key.tolist() == [1, N_ITEMS + 0, N_ITEMS + 2]
    assert table.customer.tolist() == [0, 1, 1]
    assert table.item.tolist() == [1, 0, 2]
    assert table.purchase_days.tolist() == [4, 1, 2]
    assert (table.first_day - DAY0).tolist() == [0, 5, 3]
    assert (table.last_day - DAY0).tolist() == [30, 5, 9]
    # Gaps 10, 4, 16 -> median 10; single day -> NaN; one gap of 6.
    assert table.median_gap_days[0] == 10.0
    assert math.isnan(table.median_gap_days[1])
    assert table.median_gap_days[2] == 6.0
    assert sorted(table.gaps_days.tolist()) == [4, 6, 10, 16]
    rows, found = table.lookup(np.array([N_ITEMS + 2, 3, 1], dtype=np.int64))
    assert found.tolist() == [True, False, True]
    assert rows[found].tolist() == [2, 0]


def _split() -> protocol.Split:
    cutoff = 100
    events = [
        # Customer 0: history and window. Item 0 on 3 days and rebought at day 105 (first
        # window day); item 1 on 3 days, not rebought; item 2 on 2 days, rebought; item 3 new.
        (0, 0, 40),
        (0, 0, 60),
        (0, 0, 80),
        (0, 0, 105),
        (0, 0, 120),
        (0, 1, 10),
        (0, 1, 20),
        (0, 1, 30),
        (0, 2, 50),
        (0, 2, 90),
        (0, 2, 101),
        (0, 3, 110),
        # Customer 1: history only (3 purchase days of item 0): not evaluated.
        (1, 0, 10),
        (1, 0, 20),
        (1, 0, 30),
        # Customer 2: window only: not evaluated.
        (2, 4, 100),
        # Customer 3: history, window purchase only after the window ends.
        (3, 5, 5),
        (3, 5, 130),
        # The data must reach past the window.
        (1, 5, 140),
    ]
    return protocol.make_split(build(events, n_items=N_ITEMS), DAY0 + cutoff)


def test_evaluated_customers_need_history_and_a_window_purchase() -> None:
    split = _split()
    assert split.customers.tolist() == [0]
    assert split.history.day.max() < DAY0 + 100
    assert (split.history.day >= DAY0).all()


def test_truth_and_repeat_only_truth() -> None:
    split = _split()
    assert split.truth_key.tolist() == [0, 2, 3]
    assert split.truth_customer.tolist() == [0, 0, 0]
    assert split.truth_repeat.tolist() == [True, True, False]
    assert split.repeat_customers.tolist() == [0]


def test_task_b_pairs_labels_and_actual_intervals() -> None:
    split = _split()
    # Item 2 has only 2 purchase days; customer 1 is not evaluated.
    assert split.task_b_key.tolist() == [0, 1]
    assert split.task_b_rebought.tolist() == [True, False]
    assert split.task_b_actual_interval[0] == 105 - 80
    assert math.isnan(split.task_b_actual_interval[1])


def test_min_purchase_days_is_a_parameter() -> None:
    data = build([(0, 0, 10), (0, 0, 20), (0, 0, 105), (0, 5, 140)], n_items=N_ITEMS)
    split = protocol.make_split(data, DAY0 + 100, min_purchase_days=2)
    assert split.task_b_key.tolist() == [0]
    assert split.task_b_actual_interval.tolist() == [85.0]


def test_sorted_unique() -> None:
    values = np.array([5, 1, 5, 3, 1], dtype=np.int64)
    assert protocol.sorted_unique(values).tolist() == [1, 3, 5]
    assert protocol.sorted_unique(np.array([7], dtype=np.int64)).tolist() == [7]
    assert protocol.sorted_unique(np.empty(0, dtype=np.int64)).tolist() == []
