"""The in-window AUC ceiling: its rows are the Task-B population with the window's labels, its
cross-validation scores what the columns can tell, and context columns are measured on top."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from numpy.typing import NDArray
from sklearn.metrics import roc_auc_score

from pantree_common.datasets.transactions import Transactions
from pantree_common.errors import InvalidArgument
from services.evaluation import job
from services.evaluation.ceiling import feature_ceiling, out_of_fold, window_rows
from services.recommendation.features import FEATURE_NAMES
from services.recommendation.training import TrainingConfig
from tests.unit.evaluation.synthetic import DAY0, random_shoppers

CONFIG = TrainingConfig(max_iter=30, min_samples_leaf=5)
DAY = DAY0 + 150


def _bought(transactions: Transactions, low: int, high: int) -> set[tuple[int, int]]:
    inside = (transactions.day >= low) & (transactions.day < high)
    return set(
        zip(transactions.customer[inside].tolist(), transactions.item[inside].tolist(), strict=True)
    )


def test_rows_are_the_pairs_of_window_shoppers_labelled_from_the_window() -> None:
    shoppers = random_shoppers(n_customers=60, seed=3)
    rows = window_rows(shoppers, DAY, CONFIG)
    in_window = _bought(shoppers, DAY, DAY + CONFIG.horizon_days)
    window_customers = {customer for customer, _ in in_window}
    before = shoppers.day < DAY
    days = {
        (c, i): len(
            set(shoppers.day[before & (shoppers.customer == c) & (shoppers.item == i)].tolist())
        )
        for c, i in _bought(shoppers, DAY0 - 1, DAY)
    }
    expected = {pair for pair in days if pair[0] in window_customers}
    got = list(zip(rows.customer.tolist(), rows.item.tolist(), strict=True))
    assert set(got) == expected and len(got) == len(expected)
    assert rows.label.tolist() == [pair in in_window for pair in got]
    assert rows.purchase_days.tolist() == [days[pair] for pair in got]
    assert rows.features.shape == (len(got), len(FEATURE_NAMES))
    purchase_days = rows.features[:, FEATURE_NAMES.index("purchase_days")]
    assert purchase_days.tolist() == [float(days[pair]) for pair in got]
    with_history = {customer for customer, _ in days}
    truth = {(c, i) for c, i in in_window if c in with_history}
    n_items = rows.n_items
    assert {(int(k) // n_items, int(k) % n_items) for k in rows.truth_key} == truth
    assert len(rows.truth_key) == len(truth)


def test_cross_validation_scores_what_the_columns_tell() -> None:
    rng = np.random.default_rng(0)
    customer = rng.integers(0, 200, size=4000).astype(np.int32)
    label = rng.random(4000) < 0.3
    noise = rng.normal(size=(4000, 3))
    telling = np.column_stack([noise, label + rng.normal(scale=0.3, size=4000)])
    for features, low, high in ((telling, 0.9, 1.0), (noise, 0.45, 0.55)):
        predicted = out_of_fold(features, label, customer, CONFIG)
        assert predicted is not None
        assert low < roc_auc_score(label, predicted) <= high
    assert out_of_fold(noise, np.zeros(4000, np.bool_), customer, CONFIG) is None


def test_context_columns_are_added_to_the_same_rows() -> None:
    shoppers = random_shoppers(n_customers=80, seed=4)
    horizon = CONFIG.horizon_days
    in_window = _bought(shoppers, DAY, DAY + horizon)
    calls: list[tuple[int, int]] = []

    def leaking_context(
        transactions: Transactions,
        day: int,
        horizon_days: int,
        customer: NDArray[np.int32],
        item: NDArray[np.int32],
    ) -> dict[str, NDArray[np.float64]]:
        calls.append((day, horizon_days))
        pairs = zip(customer.tolist(), item.tolist(), strict=True)
        return {"answer": np.array([float(pair in in_window) for pair in pairs])}

    result = feature_ceiling(shoppers, [DAY], CONFIG, context=leaking_context)
    assert calls == [(DAY, horizon)]
    assert result["context"] == ["answer"]
    (entry,) = result["cutoffs"]
    assert entry["cutoff_epoch_day"] == DAY and entry["task_b_pairs"] > 50
    assert entry["auc_with_context"] == 1.0
    assert entry["auc_features"] < 0.95
    # Knowing the answer ranks every rebought own product first; new products stay misses.
    assert entry["ndcg@10_with_context"] > entry["ndcg@10_features"]
    assert result["mean"] == {
        key: entry[key]
        for key in ("auc_features", "ndcg@10_features", "auc_with_context", "ndcg@10_with_context")
    }


def test_the_job_refuses_context_for_data_without_it(tmp_path: Path) -> None:
    shoppers = random_shoppers(n_customers=10, seed=5)
    frame = pd.DataFrame(
        {
            "customer_id": np.asarray(shoppers.customer_ids)[shoppers.customer],
            "item_id": np.asarray(shoppers.items.item_ids)[shoppers.item],
            "date": shoppers.day.astype("datetime64[D]").astype(str),
            "quantity": shoppers.quantity,
            "price": shoppers.price,
        }
    )
    data = tmp_path / "purchases.csv"
    frame.to_csv(data, index=False)
    with pytest.raises(InvalidArgument) as refused:
        job.ceiling(str(data), "rolling", tmp_path / "ceiling.json", with_context=True)
    assert "context" in str(refused.value) and "completejourney" in str(refused.value)
    assert not (tmp_path / "ceiling.json").exists()


def test_a_cutoff_without_both_outcomes_has_no_auc() -> None:
    shoppers = random_shoppers(n_customers=10, seed=6)
    result = feature_ceiling(shoppers, [DAY0 + 5], CONFIG)
    (entry,) = result["cutoffs"]
    assert entry["auc_features"] is None
    assert result["mean"]["auc_features"] is None
