"""`pantree batch` answers what the Recommend RPC answers: for sampled shoppers, the same products
in the same order with the same score, confidence, interval, snapping error, quantity, discount,
savings, first delivery date, reason and cold-start flag, on synthetic shoppers and on Complete
Journey households, scored by the statistics and by a trained model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from pantree.domain.v1 import offer_pb2
from pantree.orchestrator.v1 import orchestrator_service_pb2 as pb
from threadpoolctl import threadpool_limits

from pantree_common.datasets.registry import load_dataset
from pantree_common.datasets.transactions import Transactions
from pantree_common.domain import dates
from pantree_common.domain.history import MAX_EVENTS
from services.recommendation import batch
from services.recommendation.model import load
from services.recommendation.training import train_and_save
from tests.service.conftest import mesh_config, start_mesh, stop_mesh
from tests.unit.recommendation.synthetic import CUTOFF, FAST, synthetic

MAX_OFFERS = 6
# Store rules and tiers both paths must apply alike: a category never offered, an excluded
# product, a bulk tier a shopper reaches with this response's own offers, and products bought on
# two days only (cold starts).
RULES = {
    "PANTREE_MIN_PURCHASES": "2",
    "PANTREE_NEVER_SUBSCRIBE_CATEGORIES": "cat3",
    "PANTREE_EXCLUDED_PRODUCTS": "i05",
    "PANTREE_DISCOUNT_TIERS": "0:5,5:12.5",
}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    transactions, _ = synthetic()
    # One OpenMP thread: on a busy 2-core machine the trees' threads would wait on each other.
    with threadpool_limits(1):
        return train_and_save(transactions, tmp_path_factory.mktemp("model"), CUTOFF, FAST)


def rpc_rows(customer_id: str, response: pb.RecommendResponse) -> list[dict[str, Any]]:
    """The response's offers as batch rows."""
    scored_by = offer_pb2.ScoringPath.Name(response.scored_by).removeprefix("SCORING_PATH_")
    return [
        {
            "customer_id": customer_id,
            "rank": offer.rank,
            "product_id": offer.product.product_id,
            "product_name": offer.product.name,
            "category": offer.product.category,
            "score": offer.score,
            "confidence": offer.confidence,
            "predicted_interval_days": offer.predicted_interval_days,
            "delivery_interval_days": offer.delivery_interval_days,
            "interval_snap_error_days": offer.interval_snap_error_days,
            "quantity_per_delivery": offer.quantity_per_delivery,
            "discount_percent": offer.discount_percent,
            "savings_per_delivery_usd": offer.savings_per_delivery_usd,
            "monthly_savings_usd": offer.monthly_savings_usd,
            "yearly_savings_usd": offer.yearly_savings_usd,
            "first_delivery_date": dates.from_proto(offer.first_delivery_date, "date"),
            "reason": offer.reason,
            "cold_start": offer.cold_start,
            "scored_by": scored_by.lower(),
        }
        for offer in response.offers
    ]


async def assert_batch_matches_recommend(
    tmp_path: Path,
    transactions: Transactions,
    model_dir: Path | None,
    sample: int,
    options: batch.BatchOptions,
) -> list[dict[str, Any]]:
    """Run the batch, then call Recommend for `sample` of the scored shoppers (those with a
    history the RPC accepts) and compare every field; returns the rows compared."""
    env = {**RULES, "PANTREE_MODEL_PATH": str(model_dir or "")}
    config = mesh_config(tmp_path / "data", **env)
    output = tmp_path / "offers.parquet"
    result = batch.run(
        transactions,
        output,
        options,
        config.recommendation,
        config.frequency.min_purchases,
        load(model_dir) if model_dir else None,
    )
    rows: dict[str, list[dict[str, Any]]] = {}
    for row in pq.read_table(output).to_pylist():
        rows.setdefault(row["customer_id"], []).append(row)
    counts = np.bincount(transactions.customer, minlength=len(transactions.customer_ids))
    in_shard = batch.shard_of(transactions.customer_ids, options.shard_count) == options.shard_index
    candidates = np.flatnonzero(in_shard & (counts > 0) & (counts <= MAX_EVENTS))
    chosen = np.random.default_rng(7).choice(candidates, min(sample, candidates.size), False)
    mesh = await start_mesh(tmp_path / "data", **env)
    try:
        for customer in sorted(chosen.tolist()):
            (history,) = transactions.histories([customer])
            response = await mesh.orchestrator.Recommend(
                pb.RecommendRequest(
                    history=history.to_proto(),
                    as_of_epoch_day=result.as_of_epoch_day,
                    max_offers=MAX_OFFERS,
                ),
                timeout=30,
            )
            expected = rpc_rows(history.customer_id, response)
            assert rows.get(history.customer_id, []) == expected, history.customer_id
    finally:
        await stop_mesh(mesh)
    compared = [row for c in chosen.tolist() for row in rows.get(transactions.customer_ids[c], [])]
    assert len(compared) >= sample, "the sample must hold offers to compare"
    assert result.scored_by == ("local_model" if model_dir else "heuristic")
    return compared


@pytest.mark.parametrize("with_model", [False, True], ids=["heuristic", "model"])
async def test_batch_matches_recommend_on_synthetic_shoppers(
    tmp_path: Path, model_dir: Path, with_model: bool
) -> None:
    transactions, _ = synthetic(n_customers=120, seed=3)
    compared = await assert_batch_matches_recommend(
        tmp_path,
        transactions,
        model_dir if with_model else None,
        12,
        batch.BatchOptions(max_offers=MAX_OFFERS),
    )
    # Not a vacuous match: cold starts, full lists, snapped intervals, and both discount tiers
    # (the model finds 5 offers for every sampled shopper).
    tiers = {row["discount_percent"] for row in compared}
    assert tiers == ({12.5} if with_model else {5.0, 12.5})
    assert any(row["cold_start"] for row in compared)
    assert max(row["rank"] for row in compared) == MAX_OFFERS
    assert any(row["interval_snap_error_days"] != 0 for row in compared)


@pytest.fixture(scope="module")
def complete_journey() -> Transactions:
    return load_dataset("completejourney")


@pytest.mark.parametrize("with_model", [False, True], ids=["heuristic", "model"])
async def test_batch_matches_recommend_on_complete_journey_households(
    tmp_path: Path, model_dir: Path, complete_journey: Transactions, with_model: bool
) -> None:
    # One shard of 300 (about 8 households) keeps the batch and the calls short.
    options = batch.BatchOptions(max_offers=MAX_OFFERS, shard_index=1, shard_count=300)
    await assert_batch_matches_recommend(
        tmp_path, complete_journey, model_dir if with_model else None, 4, options
    )
