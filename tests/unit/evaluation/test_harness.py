"""The harness: the JSON shape exactly, determinism, wiring, and the last-basket protocol."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from pantree_common.datasets.transactions import Transactions
from services.evaluation import baselines, harness, protocol
from services.evaluation.methods import PairScores
from tests.unit.evaluation.synthetic import DAY0, build, random_shoppers

METRICS = [
    "recall@10",
    "ndcg@10",
    "phr@10",
    "rep_recall@10",
    "rep_ndcg@10",
    "recall@20",
    "ndcg@20",
    "phr@20",
    "rep_recall@20",
    "rep_ndcg@20",
    "auc",
    "brier",
    "ece",
    "interval_mae_days",
    "interval_medae_days",
    "within_7d",
]


class Oracle:
    """Peeks at the future: ranks the items bought in the window first, with certainty."""

    name = "oracle"

    def __init__(self, data: Transactions) -> None:
        self.data = data

    def score(self, history: Transactions, cutoff_day: int, horizon_days: int) -> PairScores:
        window = protocol.pair_table(self.data.window(cutoff_day, cutoff_day + horizon_days))
        seen = protocol.pair_table(history)
        keys = np.union1d(window.key, seen.key)
        _, future = window.lookup(keys)
        rows, _ = window.lookup(keys)
        last_rows, in_history = seen.lookup(keys)
        interval = np.where(
            future & in_history, window.first_day[rows] - seen.last_day[last_rows], np.nan
        )
        n_items = len(history.items)
        return PairScores(
            customer=(keys // n_items).astype(np.int32),
            item=(keys % n_items).astype(np.int32),
            # Window items first, the repeat ones among them before the new ones.
            score=future * (1.0 + in_history),
            p_rebuy=future.astype(np.float64),
            interval_days=interval.astype(np.float64),
        )


class Twice:
    """Scores one pair twice: the harness must refuse it."""

    name = "twice"

    def score(self, history: Transactions, cutoff_day: int, horizon_days: int) -> PairScores:
        return PairScores(
            np.array([0, 0], np.int32), np.array([1, 1], np.int32), np.array([1.0, 2.0])
        )


@pytest.fixture(scope="module")
def data() -> Transactions:
    return random_shoppers()


def test_json_shape_is_exact(data: Transactions) -> None:
    cutoffs = protocol.rolling_cutoffs(data)
    result = harness.evaluate(data, baselines.baselines(), cutoffs)
    assert list(result) == ["dataset", "protocol", "n_customers", "methods"]
    assert result["dataset"] == "synthetic"
    assert list(result["methods"]) == [
        "p_topfreq",
        "g_topfreq",
        "most_recent",
        "median_gap",
        "seed_heuristic",
    ]
    for values in result["methods"].values():
        assert list(values) == METRICS
        for entry in values.values():
            assert list(entry) == ["mean", "sd"]
    protocol_fields = result["protocol"]
    for field in ("cutoffs", "horizon_days", "k", "min_purchase_days_task_b"):
        assert field in protocol_fields
    assert protocol_fields["horizon_days"] == 28
    assert protocol_fields["k"] == [10, 20]
    assert protocol_fields["min_purchase_days_task_b"] == 3
    assert protocol_fields["cutoff_offsets_days"] == [c - DAY0 for c in cutoffs]
    assert isinstance(result["n_customers"], int) and result["n_customers"] > 0
    # Plain JSON: it round-trips unchanged.
    assert json.loads(json.dumps(result)) == result


def test_metrics_a_method_cannot_produce_are_null(data: Transactions) -> None:
    result = harness.evaluate(data, [baselines.MostRecent(), baselines.PTopFreq()], [DAY0 + 140])
    recent = result["methods"]["most_recent"]
    for metric in ("auc", "brier", "ece", "interval_mae_days", "interval_medae_days", "within_7d"):
        assert recent[metric] == {"mean": None, "sd": None}
    topfreq = result["methods"]["p_topfreq"]
    assert topfreq["auc"]["mean"] is not None
    assert topfreq["interval_mae_days"]["mean"] is None
    # One cutoff: sd 0.
    assert topfreq["recall@10"]["sd"] == 0.0


def test_mean_and_sample_sd_across_cutoffs(data: Transactions) -> None:
    cutoffs = protocol.rolling_cutoffs(data, step_days=14)
    assert len(cutoffs) >= 3
    method = [baselines.PTopFreq()]
    combined = harness.evaluate(data, method, cutoffs)["methods"]["p_topfreq"]["recall@10"]
    singles = [
        harness.evaluate(data, method, [c])["methods"]["p_topfreq"]["recall@10"]["mean"]
        for c in cutoffs
    ]
    assert combined["mean"] == pytest.approx(np.mean(singles), abs=2e-6)
    assert combined["sd"] == pytest.approx(np.std(singles, ddof=1), abs=2e-6)


def test_deterministic_to_the_last_digit(data: Transactions) -> None:
    cutoffs = protocol.rolling_cutoffs(data, step_days=14)
    first = json.dumps(harness.evaluate(data, baselines.baselines(), cutoffs))
    second = json.dumps(harness.evaluate(data, baselines.baselines(), cutoffs))
    assert first == second
    # Values are rounded to 6 decimals.
    for values in json.loads(first)["methods"].values():
        for entry in values.values():
            for number in entry.values():
                assert number is None or round(number, 6) == number


def test_an_oracle_gets_perfect_scores(data: Transactions) -> None:
    cutoffs = protocol.rolling_cutoffs(data, step_days=14)
    run = harness.run_evaluation(data, [Oracle(data)], cutoffs)
    values = run.result["methods"]["oracle"]
    for metric in ("ndcg@10", "phr@10", "rep_ndcg@10", "ndcg@20", "auc", "within_7d"):
        assert values[metric]["mean"] == 1.0, metric
    assert values["brier"]["mean"] == 0.0
    assert values["ece"]["mean"] == 0.0
    assert values["interval_mae_days"]["mean"] == 0.0
    bins = run.reliability["oracle"]
    assert bins is not None and sum(bins["count"]) == sum(
        run.result["protocol"]["task_b_pairs_per_cutoff"]
    )
    assert set(run.seconds) == {"splits", "oracle"}


def test_n_customers_counts_distinct_customers_over_cutoffs(data: Transactions) -> None:
    cutoffs = protocol.rolling_cutoffs(data, step_days=14)
    result = harness.evaluate(data, [baselines.PTopFreq()], cutoffs)
    expected: set[int] = set()
    for cutoff in cutoffs:
        expected.update(protocol.make_split(data, cutoff).customers.tolist())
    assert result["n_customers"] == len(expected)
    assert result["protocol"]["customers_per_cutoff"] == [
        protocol.make_split(data, c).customers.size for c in cutoffs
    ]


def test_refuses_pairs_scored_twice_and_duplicate_names(data: Transactions) -> None:
    with pytest.raises(ValueError, match="scored twice"):
        harness.evaluate(data, [Twice()], [DAY0 + 140])
    with pytest.raises(ValueError, match="unique"):
        harness.evaluate(data, [baselines.PTopFreq(), baselines.PTopFreq()], [DAY0 + 140])


def test_evaluate_by_hand() -> None:
    # Customer 0 bought items 0 (3 days) and 1 (1 day) before day 100 and buys 1 and 2 after.
    data = build(
        [(0, 0, 10), (0, 0, 20), (0, 0, 30), (0, 1, 90), (0, 1, 110), (0, 2, 120), (0, 3, 150)]
    )
    values = harness.evaluate(data, [baselines.PTopFreq()], [DAY0 + 100])["methods"]["p_topfreq"]
    # Ranking [0, 1]; truth {1, 2}: one hit at rank 2.
    assert values["recall@10"]["mean"] == 0.5
    assert values["ndcg@10"]["mean"] == round((1 / math.log2(3)) / (1 + 1 / math.log2(3)), 6)
    assert values["phr@10"]["mean"] == 1.0
    # Repeat-only truth {1}: hit at rank 2.
    assert values["rep_recall@10"]["mean"] == 1.0
    assert values["rep_ndcg@10"]["mean"] == round(1 / math.log2(3), 6)
    # Task B: one pair (item 0), not rebought: AUC undefined, Brier = p^2.
    assert values["auc"]["mean"] is None
    p = 1 - math.exp(-3 / 90 * 28)
    assert values["brier"]["mean"] == round(p * p, 6)


def test_last_basket_split_aligns_every_customer_on_one_cutoff() -> None:
    data = build(
        [
            (0, 0, 1),
            (0, 1, 5),
            (0, 0, 9),
            (0, 2, 9),
            (1, 1, 3),
            (1, 1, 20),
            (1, 3, 20),
            (2, 4, 7),  # one basket only: not evaluated
        ]
    )
    split = harness.last_basket_split(data)
    assert split.customers.tolist() == [0, 1]
    assert split.cutoff_day == DAY0 + 20
    n_items = len(data.items)
    assert split.truth_key.tolist() == [0, 2, n_items + 1, n_items + 3]
    history = list(
        zip(
            split.history.customer.tolist(),
            split.history.item.tolist(),
            (split.history.day - DAY0).tolist(),
            strict=True,
        )
    )
    # Customer 0's days move by 11 (last basket 9 -> 20); customer 1 stays.
    assert history == [(0, 0, 12), (0, 1, 16), (1, 1, 3)]
    with pytest.raises(ValueError):
        harness.last_basket_split(data, min_baskets=1)


def test_evaluate_last_basket_by_hand() -> None:
    data = build([(0, 0, 1), (0, 0, 2), (0, 1, 3), (0, 1, 9), (0, 2, 9), (1, 1, 3), (1, 5, 20)])
    result = harness.evaluate_last_basket(data, [baselines.PTopFreq()], k=1)
    assert list(result) == ["dataset", "protocol", "n_customers", "methods"]
    assert result["n_customers"] == 2
    values = result["methods"]["p_topfreq"]
    assert list(values) == ["recall@1", "ndcg@1", "ndcg_uncapped@1", "phr@1"]
    # Customer 0: top-1 item 0 (2 days) misses {1, 2}; customer 1: item 1 misses {5}.
    assert values == {"recall@1": 0.0, "ndcg@1": 0.0, "ndcg_uncapped@1": 0.0, "phr@1": 0.0}
    result = harness.evaluate_last_basket(data, [baselines.MostRecent()], k=2)
    values = result["methods"]["most_recent"]
    # Customer 0: [1, 0] -> one hit of 2 at rank 1; customer 1: miss.
    assert values["recall@2"] == 0.25
    assert values["ndcg@2"] == round(0.5 * 1 / (1 + 1 / math.log2(3)), 6)
    assert values["phr@2"] == 0.5
