"""The learned subscription model on synthetic shoppers: it finds planted rhythms, is calibrated,
predicts the planted period, and its artifact survives a fresh process but not tampering."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pantree.domain.v1 import product_pb2

from pantree_common.datasets.transactions import Transactions
from pantree_common.errors import FailedPrecondition
from services.evaluation import metrics, pantree_method
from services.evaluation.pantree_method import PantreeMethod, discovery_rates
from services.frequency.statistics import analyze, to_protos
from services.recommendation import model as model_module
from services.recommendation import training
from services.recommendation.features import FEATURE_NAMES
from services.recommendation.model import SubscriptionModel
from tests.unit.recommendation.synthetic import CUTOFF, DAY0, FAST, synthetic, synthetic_items


@pytest.fixture(scope="module")
def data() -> tuple[Transactions, dict[tuple[int, int], int]]:
    return synthetic()


@pytest.fixture(scope="module")
def model(data: tuple[Transactions, dict[tuple[int, int], int]]) -> SubscriptionModel:
    transactions, _ = data
    return training.fit(transactions, CUTOFF, FAST)


@pytest.fixture(scope="module")
def predictions(
    data: tuple[Transactions, dict[tuple[int, int], int]], model: SubscriptionModel
) -> tuple[training.PairTable, model_module.Predictions]:
    transactions, _ = data
    return training.predict_pairs(model, transactions.window(DAY0, CUTOFF), CUTOFF)


def _planted_mask(
    pairs: training.PairTable, planted: dict[tuple[int, int], int]
) -> tuple[np.ndarray, np.ndarray]:
    period = np.array(
        [
            planted.get((c, i), 0)
            for c, i in zip(pairs.customer.tolist(), pairs.item.tolist(), strict=True)
        ]
    )
    return period > 0, period


def test_rhythmic_pairs_get_higher_probability(
    data: tuple[Transactions, dict[tuple[int, int], int]],
    predictions: tuple[training.PairTable, model_module.Predictions],
) -> None:
    pairs, predicted = predictions
    rhythmic, _ = _planted_mask(pairs, data[1])
    assert predicted.p_rebuy[rhythmic].mean() > 0.9
    assert predicted.p_rebuy[~rhythmic].mean() < 0.6
    assert np.median(predicted.p_rebuy[rhythmic]) > np.quantile(predicted.p_rebuy[~rhythmic], 0.9)
    np.testing.assert_allclose(predicted.confidence, 100 * predicted.p_rebuy)
    # The top three of every customer are its planted items.
    order = np.lexsort((-predicted.score, pairs.customer))
    top = np.concatenate([order[pairs.customer[order] == c][:3] for c in np.unique(pairs.customer)])
    assert rhythmic[top].mean() > 0.95


def test_probabilities_are_calibrated_on_the_next_window(
    data: tuple[Transactions, dict[tuple[int, int], int]],
    predictions: tuple[training.PairTable, model_module.Predictions],
    model: SubscriptionModel,
) -> None:
    transactions, _ = data
    pairs, predicted = predictions
    window = transactions.window(CUTOFF, CUTOFF + model.horizon_days)
    n_items = len(transactions.items)
    bought = np.isin(
        pairs.customer.astype(np.int64) * n_items + pairs.item,
        window.customer.astype(np.int64) * n_items + window.item,
    )
    ece = metrics.ece(bought, predicted.p_rebuy)
    assert ece < 0.05
    assert model.info.metrics["ece"] < 0.06
    assert model.info.metrics["auc"] > 0.7


def test_interval_model_finds_the_planted_period(
    data: tuple[Transactions, dict[tuple[int, int], int]],
    predictions: tuple[training.PairTable, model_module.Predictions],
) -> None:
    pairs, predicted = predictions
    rhythmic, period = _planted_mask(pairs, data[1])
    error = np.abs(predicted.interval_days[rhythmic] - period[rhythmic])
    assert np.median(error) <= 1.5
    assert np.mean(error <= 3) > 0.8


def test_cold_start_pairs_are_flagged(
    predictions: tuple[training.PairTable, model_module.Predictions],
) -> None:
    pairs, predicted = predictions
    np.testing.assert_array_equal(predicted.cold_start, pairs.table.purchase_days < 3)
    assert predicted.cold_start.any() and not predicted.cold_start.all()
    assert np.isfinite(predicted.p_rebuy).all() and np.isfinite(predicted.interval_days).all()


def test_serving_path_matches_batch_predictions(
    data: tuple[Transactions, dict[tuple[int, int], int]],
    model: SubscriptionModel,
    predictions: tuple[training.PairTable, model_module.Predictions],
) -> None:
    transactions, _ = data
    pairs, predicted = predictions
    history = transactions.window(DAY0, CUTOFF).histories([5])[0]
    analysis = to_protos([history], analyze([history], [CUTOFF], 3), [CUTOFF], 3)[0]
    products = {p.product_id: p.to_proto() for p in history.products}
    served = model.predict_analysis(analysis, products)
    rows = np.flatnonzero(pairs.customer == 5)
    batch = dict(
        zip(
            (transactions.items.item_ids[i] for i in pairs.item[rows]),
            predicted.p_rebuy[rows].tolist(),
            strict=True,
        )
    )
    for item, p in zip(analysis.items, served.p_rebuy.tolist(), strict=True):
        assert p == pytest.approx(batch[item.product_id], abs=1e-12)
    # A product the training data never saw still gets a prediction (from its priors).
    products[history.products[0].product_id] = product_pb2.Product(
        product_id=history.products[0].product_id, name="x", category="other"
    )
    assert np.isfinite(model.predict_analysis(analysis, products).p_rebuy).all()


_FRESH_PROCESS = """
import sys
import numpy as np
from services.recommendation import model
loaded = model.load(sys.argv[1])
out = loaded.predict_matrix(np.load(sys.argv[2]))
np.save(sys.argv[3], np.stack([out.p_rebuy, out.interval_days, out.score]))
"""


def test_artifact_round_trip_in_a_fresh_process(model: SubscriptionModel, tmp_path: Path) -> None:
    directory = model_module.save(model, tmp_path / "model")
    card = json.loads((directory / model_module.CARD_FILE).read_text())
    assert card["features"] == list(FEATURE_NAMES)
    assert card["dataset"] == "synthetic"
    assert card["training_cutoff_epoch_day"] == CUTOFF
    assert card["training_cutoff_date"] == "2022-08-20"
    assert len(card["training_data_sha256"]) == 64
    assert {"auc", "ece", "rep_ndcg@10", "interval_mae_days"} <= card["validation_metrics"].keys()
    assert {"numpy", "scikit-learn", "skops", "python"} <= card["libraries"].keys()
    rng = np.random.default_rng(0)
    matrix = rng.random((50, len(FEATURE_NAMES))) * 30
    np.save(tmp_path / "x.npy", matrix)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    subprocess.run(
        [sys.executable, "-c", _FRESH_PROCESS, directory, tmp_path / "x.npy", tmp_path / "y.npy"],
        check=True,
        env=env,
        timeout=60,
    )
    expected = model.predict_matrix(matrix)
    np.testing.assert_array_equal(
        np.load(tmp_path / "y.npy"),
        np.stack([expected.p_rebuy, expected.interval_days, expected.score]),
    )
    loaded = model_module.load(directory)
    assert loaded.frequency_weight == model.frequency_weight
    assert loaded.info.metrics == model.info.metrics


def test_a_changed_byte_in_the_artifact_is_refused(
    model: SubscriptionModel, tmp_path: Path
) -> None:
    directory = model_module.save(model, tmp_path)
    artifact = directory / model_module.ARTIFACT_FILE
    data = bytearray(artifact.read_bytes())
    data[len(data) // 2] ^= 0x01
    artifact.write_bytes(bytes(data))
    with pytest.raises(FailedPrecondition, match="modified or corrupted"):
        model_module.load(directory)


def test_an_edited_card_is_refused(model: SubscriptionModel, tmp_path: Path) -> None:
    directory = model_module.save(model, tmp_path)
    card_path = directory / model_module.CARD_FILE
    card = json.loads(card_path.read_text())
    card["validation_metrics"]["auc"] = 0.99
    card_path.write_text(json.dumps(card))
    with pytest.raises(FailedPrecondition, match="differs from the card sealed"):
        model_module.load(directory)


def test_missing_files_and_bad_json_are_refused(model: SubscriptionModel, tmp_path: Path) -> None:
    directory = model_module.save(model, tmp_path)
    (directory / model_module.CARD_FILE).write_text("{not json")
    with pytest.raises(FailedPrecondition, match="not valid JSON"):
        model_module.load(directory)
    (directory / model_module.CARD_FILE).unlink()
    with pytest.raises(FailedPrecondition, match=r"model_card\.json is missing"):
        model_module.load(directory)


def test_an_untrusted_type_is_refused_before_loading(
    model: SubscriptionModel, tmp_path: Path
) -> None:
    import skops.io as sio
    from sklearn.linear_model import LogisticRegression

    directory = model_module.save(model, tmp_path)
    card = json.loads((directory / model_module.CARD_FILE).read_text())
    body = {key: value for key, value in card.items() if key != "artifact_sha256"}
    payload = {**model_module._payload(model, body), "extra": LogisticRegression()}
    artifact = directory / model_module.ARTIFACT_FILE
    sio.dump(payload, artifact)
    card["artifact_sha256"] = model_module._sha256_file(artifact)
    (directory / model_module.CARD_FILE).write_text(json.dumps(card))
    with pytest.raises(FailedPrecondition, match=r"outside the trusted list.*LogisticRegression"):
        model_module.load(directory)


def test_too_little_history_is_a_clear_error(
    data: tuple[Transactions, dict[tuple[int, int], int]],
) -> None:
    with pytest.raises(ValueError, match="too little data"):
        training.fit(data[0], DAY0 + 60, FAST)


def test_pantree_method_scores_every_history_pair(
    data: tuple[Transactions, dict[tuple[int, int], int]],
) -> None:
    transactions, _ = data
    history = transactions.window(DAY0, CUTOFF)
    n_items = len(transactions.items)
    own = np.unique(history.customer.astype(np.int64) * n_items + history.item)
    for choices in ((0,), (24,)):
        method = PantreeMethod(FAST, discovery_choices=choices)
        scores = method.score(history, CUTOFF, 28)
        keys = scores.customer.astype(np.int64) * n_items + scores.item
        assert np.unique(keys).size == keys.size
        assert np.isin(own, keys).all()
        assert scores.p_rebuy is not None and scores.interval_days is not None
        assert ((scores.p_rebuy >= 0) & (scores.p_rebuy <= 1)).all()
        assert np.isfinite(scores.score).all()
        discovered = ~np.isin(keys, own)
        assert discovered.any() == bool(choices[0])
        assert np.isnan(scores.interval_days[discovered]).all()
        assert (scores.interval_days[~discovered] >= 1).all()


def test_discovery_rates_count_first_purchases_among_non_owners() -> None:
    # Customers 0-3 shop in the last window [20, 48); item 1 is new to customers 0 and 1, item
    # 2 was already owned by customer 2 (a rebuy, not a discovery), item 0 is owned by all.
    events = [(c, 0, 5) for c in range(4)] + [(2, 2, 6), (0, 1, 30), (1, 1, 31), (2, 2, 32)]
    events += [(3, 0, 40)]
    array = np.array(events)
    transactions = Transactions.build(
        "d",
        [f"c{c}" for c in range(4)],
        synthetic_items(3),
        array[:, 0],
        array[:, 1],
        array[:, 2] + DAY0,
        np.ones(len(array)),
        np.ones(len(array)),
    )
    items, rates = discovery_rates(transactions, DAY0 + 48, 28)
    assert items.tolist() == [1, 0, 2]
    prior = pantree_method.DISCOVERY_PRIOR_CUSTOMERS
    # Shoppers of the window: 0, 1, 2, 3 (all own item 0; customer 2 owns item 2).
    assert rates.tolist() == pytest.approx([2 / (4 + prior), 0.0, 0.0])
