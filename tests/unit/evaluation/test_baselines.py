"""Baselines on a tiny synthetic set: rankings, probabilities and intervals by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pantree_common.datasets.transactions import Transactions
from services.evaluation import baselines
from services.evaluation.methods import Method, PairScores
from services.frequency.statistics import analyze
from tests.unit.evaluation.synthetic import DAY0, build

CUTOFF = DAY0 + 100
HORIZON = 28
N_ITEMS = 6


def _history() -> Transactions:
    return build(
        [
            # Customer 0: item 0 on 4 days every 10 days (last 90), item 1 on 2 days (last 95),
            # item 2 on 2 days (last 50), item 3 once (day 99).
            (0, 0, 60),
            (0, 0, 70),
            (0, 0, 80),
            (0, 0, 90),
            (0, 1, 75),
            (0, 1, 95),
            (0, 2, 20),
            (0, 2, 50),
            (0, 3, 99),
            # Customer 1: item 4 on 3 days, item 0 once.
            (1, 4, 0),
            (1, 4, 30),
            (1, 4, 40),
            (1, 0, 10),
        ],
        n_items=N_ITEMS,
    )


def _ranked(scores: PairScores, customer: int) -> list[int]:
    """Items of one customer, best first (ties to the lower item, as the harness ranks)."""
    mine = scores.customer == customer
    order = np.lexsort((scores.item[mine], -scores.score[mine]))
    return scores.item[mine][order].tolist()


def _by_item(values: np.ndarray, scores: PairScores, customer: int) -> dict[int, float]:
    mine = scores.customer == customer
    return dict(zip(scores.item[mine].tolist(), values[mine].tolist(), strict=True))


def test_every_baseline_is_a_method_with_a_unique_name() -> None:
    methods: list[Method] = baselines.baselines()
    assert [m.name for m in methods] == [
        "p_topfreq",
        "g_topfreq",
        "most_recent",
        "median_gap",
        "seed_heuristic",
    ]


def test_p_topfreq_counts_purchase_days_with_recency_ties() -> None:
    scores = baselines.PTopFreq().score(_history(), CUTOFF, HORIZON)
    # Item 0: 4 days; items 1 and 2: 2 days each, item 1 more recent; item 3: 1 day.
    assert _ranked(scores, 0) == [0, 1, 2, 3]
    assert _ranked(scores, 1) == [4, 0]
    assert scores.p_rebuy is not None
    p = _by_item(scores.p_rebuy, scores, 0)
    assert p[0] == pytest.approx(1 - math.exp(-4 / (100 - 60) * HORIZON))
    assert p[3] == pytest.approx(1 - math.exp(-1 / 1 * HORIZON))
    assert scores.interval_days is None


def test_g_topfreq_gives_everyone_the_same_list() -> None:
    scores = baselines.GTopFreq(list_length=3).score(_history(), CUTOFF, HORIZON)
    # Purchase days over everyone: item 0 -> 5, item 4 -> 3, items 1, 2 -> 2, item 3 -> 1.
    assert _ranked(scores, 0)[:3] == [0, 4, 1]
    assert _ranked(scores, 1)[:3] == [0, 4, 1]
    # Every history pair is scored too (for Task B), with the constant interval and rate.
    assert set(_ranked(scores, 0)) == {0, 1, 2, 3, 4}
    assert scores.interval_days is not None and scores.p_rebuy is not None
    # Gaps: 10, 10, 10, 20, 30, 30, 10 -> median 10.
    assert set(scores.interval_days.tolist()) == {10.0}
    assert np.unique(scores.p_rebuy).size == 1


def test_g_topfreq_rate_is_the_rebuy_share_of_the_last_horizon() -> None:
    # Before day 72: customer 0's item 0 has 3 days and is rebought (day 80); item 1 (3 days)
    # is not; customer 1 does not shop in [72, 100) so is left out.
    history = build(
        [
            (0, 0, 10),
            (0, 0, 30),
            (0, 0, 50),
            (0, 0, 80),
            (0, 1, 5),
            (0, 1, 15),
            (0, 1, 25),
            (1, 2, 1),
            (1, 2, 2),
            (1, 2, 3),
        ]
    )
    scores = baselines.GTopFreq().score(history, CUTOFF, HORIZON)
    assert scores.p_rebuy is not None
    assert scores.p_rebuy[0] == pytest.approx(0.5)


def test_gp_topfreq_fills_with_the_global_list_after_personal_items() -> None:
    scores = baselines.GPTopFreq(list_length=2).score(_history(), CUTOFF, HORIZON)
    assert _ranked(scores, 1) == [4, 0]
    assert _ranked(scores, 0) == [0, 1, 2, 3, 4]


def test_most_recent_orders_by_last_day_then_count() -> None:
    history = build([(0, 0, 10), (0, 0, 50), (0, 1, 50), (0, 2, 99), (0, 3, 5)])
    scores = baselines.MostRecent().score(history, CUTOFF, HORIZON)
    assert _ranked(scores, 0) == [2, 0, 1, 3]
    assert scores.p_rebuy is None and scores.interval_days is None


def test_median_gap_scores_how_due_an_item_is() -> None:
    scores = baselines.MedianGap().score(_history(), CUTOFF, HORIZON)
    due = _by_item(scores.score, scores, 0)
    assert due[0] == pytest.approx(10 / 10)  # 10 days since, every 10 days
    assert due[1] == pytest.approx(5 / 20)
    assert due[2] == pytest.approx(50 / 30)
    assert due[3] < 0  # single purchase day: after every rhythmic item
    assert _ranked(scores, 0) == [2, 0, 1, 3]
    assert scores.interval_days is not None and scores.p_rebuy is not None
    interval = _by_item(scores.interval_days, scores, 0)
    assert interval[0] == 10.0 and interval[2] == 30.0 and math.isnan(interval[3])
    p = _by_item(scores.p_rebuy, scores, 0)
    assert p[0] == pytest.approx(1 - math.exp(-HORIZON / 10))


def test_seed_heuristic_uses_the_frequency_confidence() -> None:
    history = _history()
    scores = baselines.SeedHeuristic().score(history, CUTOFF, HORIZON)
    histories = history.histories([0, 1])
    table = analyze(histories, [CUTOFF, CUTOFF], 3)
    for c, hist in enumerate(histories):
        rows = range(table.customer_offsets[c], table.customer_offsets[c + 1])
        expected = {
            int(hist.products[table.product_index[r]].product_id[1:]): (
                table.confidence[r],
                table.median_interval_days[r],
            )
            for r in rows
        }
        assert scores.p_rebuy is not None and scores.interval_days is not None
        p = _by_item(scores.p_rebuy, scores, c)
        interval = _by_item(scores.interval_days, scores, c)
        for item, (confidence, median) in expected.items():
            assert p[item] == pytest.approx(confidence / 100)
            if median > 0:
                assert interval[item] == median
    # Item 0 is the only one with >= 3 purchase days for customer 0, then count and recency.
    assert _ranked(scores, 0) == [0, 1, 2, 3]
    assert _by_item(scores.score, scores, 0)[0] > 1.0


def test_baselines_score_only_customers_with_history() -> None:
    history = build([(2, 1, 10), (2, 1, 20)], n_customers=4)
    for method in [*baselines.baselines(), baselines.GPTopFreq()]:
        scores = method.score(history, CUTOFF, HORIZON)
        assert set(scores.customer.tolist()) == {2}, method.name
        assert scores.customer.dtype == np.int32 and scores.item.dtype == np.int32


def test_seed_heuristic_histories_match_transactions_histories() -> None:
    history = _history()
    method = baselines.SeedHeuristic()
    pairs = baselines.pair_table(history)
    ours = method._histories(history, pairs, np.array([0, 1]))
    theirs = history.histories([0, 1])
    for mine, expected in zip(ours, theirs, strict=True):
        assert mine.customer_id == expected.customer_id
        assert mine.products == expected.products
        for column in ("product_index", "epoch_day", "quantity", "unit_price_usd"):
            assert getattr(mine, column).tolist() == getattr(expected, column).tolist()
