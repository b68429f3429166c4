"""Metrics against hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from services.evaluation import metrics

N_ITEMS = 100


def _ranking(
    rankings: dict[int, list[int]], truths: dict[int, set[int]], k: int, customers: list[int]
) -> metrics.RankingMetrics:
    """Metrics for ranked item lists (first = best) and truth sets, keyed by customer."""
    scored = [
        (c, item, -float(rank)) for c, items in rankings.items() for rank, item in enumerate(items)
    ]
    truth = sorted(c * N_ITEMS + item for c, items in truths.items() for item in items)
    customer = np.array([c for c, _, _ in scored], dtype=np.int32)
    key = np.array([c * N_ITEMS + i for c, i, _ in scored], dtype=np.int64)
    score = np.array([s for _, _, s in scored])
    truth_key = np.array(truth, dtype=np.int64)
    return metrics.ranking_metrics(
        np.array(customers, dtype=np.int32),
        (truth_key // N_ITEMS).astype(np.int32),
        truth_key,
        customer,
        key,
        score,
        k,
    )


def test_recall_ndcg_phr_by_hand() -> None:
    result = _ranking(
        {0: [1, 2, 3, 4], 2: [7, 8, 9]},
        {0: {2, 4, 5}, 1: {1}, 2: {6}},
        k=2,
        customers=[0, 1, 2],
    )
    # Customer 0: top-2 = [1, 2]; one hit (item 2) at rank 2 of 3 truth items.
    dcg = 1 / math.log2(3)
    assert result.recall[0] == pytest.approx(1 / 3)
    assert result.ndcg[0] == pytest.approx(dcg / (1 + 1 / math.log2(3)))
    assert result.ndcg_uncapped[0] == pytest.approx(dcg / (1 + 1 / math.log2(3) + 1 / 2))
    assert result.phr[0] == 1.0
    # Customer 1 has no scored items, customer 2 no hit: zeros.
    for customer in (1, 2):
        assert result.recall[customer] == 0.0
        assert result.ndcg[customer] == 0.0
        assert result.phr[customer] == 0.0


def test_capped_ndcg_is_one_for_a_perfect_top_k() -> None:
    result = _ranking({0: [3, 1, 2, 9]}, {0: {1, 2, 3}}, k=2, customers=[0])
    assert result.ndcg[0] == pytest.approx(1.0)
    assert result.ndcg_uncapped[0] == pytest.approx(
        (1 + 1 / math.log2(3)) / (1 + 1 / math.log2(3) + 0.5)
    )
    assert result.recall[0] == pytest.approx(2 / 3)


def test_ndcg_discount_by_rank() -> None:
    # One truth item at rank 3 of the top 10: DCG = 1 / log2(4), IDCG = 1.
    result = _ranking({0: [5, 6, 7, 8]}, {0: {7}}, k=10, customers=[0])
    assert result.ndcg[0] == pytest.approx(0.5)
    assert result.recall[0] == 1.0


def test_ties_go_to_the_lower_item_and_other_customers_are_ignored() -> None:
    customer = np.array([0, 0, 0, 1], dtype=np.int32)
    key = np.array([5, 3, 4, N_ITEMS + 1], dtype=np.int64)
    score = np.array([1.0, 1.0, 0.5, 9.0])
    truth = np.array([3], dtype=np.int64)
    top1 = metrics.ranking_metrics(
        np.array([0], np.int32), np.array([0], np.int32), truth, customer, key, score, 1
    )
    assert top1.recall.tolist() == [1.0]
    order, rank = metrics.rank_within_customer(customer, key, score)
    assert key[order].tolist() == [3, 5, 4, N_ITEMS + 1]
    assert rank.tolist() == [0, 1, 2, 0]


def test_auc_sanity() -> None:
    labels = np.array([False, False, True, True])
    assert metrics.auc(labels, np.array([0.1, 0.2, 0.8, 0.9])) == 1.0
    assert metrics.auc(labels, np.array([0.9, 0.8, 0.2, 0.1])) == 0.0
    assert metrics.auc(labels, np.full(4, 0.3)) == 0.5
    assert metrics.auc(labels, np.array([0.1, 0.8, 0.2, 0.9])) == 0.75
    assert metrics.auc(np.array([True, True]), np.array([0.1, 0.2])) is None


def test_brier_by_hand() -> None:
    labels = np.array([True, False])
    assert metrics.brier(labels, np.array([0.8, 0.4])) == pytest.approx((0.04 + 0.16) / 2)
    assert metrics.brier(np.array([], dtype=bool), np.array([])) is None


def test_ece_of_a_perfectly_calibrated_toy_is_zero() -> None:
    predicted = np.array([0.25] * 4 + [0.75] * 4 + [1.0] * 2)
    labels = np.array([1, 0, 0, 0, 1, 1, 1, 0, 1, 1], dtype=bool)
    assert metrics.ece(labels, predicted) == pytest.approx(0.0)


def test_ece_weights_bins_by_count() -> None:
    # Bin [0.9, 1]: p 0.9, observed 0.5 (4 pairs); bin [0.1, 0.2): p 0.1, observed 0.1 (10 pairs).
    predicted = np.array([0.9] * 4 + [0.1] * 10)
    labels = np.array([1, 1, 0, 0] + [1] + [0] * 9, dtype=bool)
    assert metrics.ece(labels, predicted) == pytest.approx(4 / 14 * 0.4)


def test_reliability_bins() -> None:
    bins = metrics.reliability(np.array([1, 0, 1, 1], dtype=bool), np.array([0.0, 0.05, 1.0, 0.95]))
    assert bins.count.tolist() == [2, 0, 0, 0, 0, 0, 0, 0, 0, 2]
    assert bins.mean_predicted[0] == pytest.approx(0.025)
    assert bins.observed_rate[9] == 1.0
    as_json = bins.to_json()
    assert as_json["mean_predicted"][1] is None
    assert as_json["count"][9] == 2
    merged = bins.merged(bins)
    assert merged.count.sum() == 8
    assert merged.ece() == pytest.approx(bins.ece())


def test_interval_errors_by_hand() -> None:
    errors = metrics.interval_errors(
        np.array([10.0, 20.0, 30.0, 40.0]), np.array([12.0, 30.0, 30.0, np.nan])
    )
    assert errors.mae_days == pytest.approx(4.0)
    assert errors.medae_days == pytest.approx(2.0)
    assert errors.within_7d == pytest.approx(2 / 3)
    assert metrics.interval_errors(np.array([1.0]), np.array([np.nan])).mae_days is None
