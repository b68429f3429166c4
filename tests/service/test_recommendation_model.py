"""The recommendation step serving a trained model: scored_by says so, a bad artifact stops it."""

from __future__ import annotations

from pathlib import Path

import pytest
from pantree.domain.v1 import offer_pb2
from pantree.orchestrator.v1 import orchestrator_service_pb2 as pb

from pantree_common.errors import FailedPrecondition
from services.recommendation import model as model_module
from services.recommendation.training import train_and_save
from tests.histories import rhythmic_history
from tests.service.conftest import start_mesh, stop_mesh
from tests.unit.recommendation.synthetic import CUTOFF, FAST, synthetic


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    transactions, _ = synthetic()
    return train_and_save(transactions, tmp_path_factory.mktemp("model"), CUTOFF, FAST)


async def test_recommend_is_scored_by_the_loaded_model(tmp_path: Path, model_dir: Path) -> None:
    mesh = await start_mesh(tmp_path, PANTREE_MODEL_PATH=str(model_dir))
    try:
        response = await mesh.orchestrator.Recommend(
            pb.RecommendRequest(history=rhythmic_history(), include_analysis=True), timeout=10
        )
    finally:
        await stop_mesh(mesh)
    assert response.scored_by == offer_pb2.SCORING_PATH_LOCAL_MODEL
    assert response.offers
    statistics = {item.product_id: item for item in response.analysis.items}
    for offer in response.offers:
        assert 0 <= offer.confidence <= 100
        # The confidence is the model's calibrated probability, not the statistics' composite.
        assert offer.confidence != statistics[offer.product.product_id].confidence


def tampered_copy(model_dir: Path, into: Path) -> Path:
    """The artifact with one byte flipped."""
    into.mkdir()
    for source in model_dir.iterdir():
        (into / source.name).write_bytes(source.read_bytes())
    artifact = into / model_module.ARTIFACT_FILE
    data = bytearray(artifact.read_bytes())
    data[len(data) // 2] ^= 0xFF
    artifact.write_bytes(bytes(data))
    return into


async def test_a_tampered_model_stops_the_service_from_starting(
    tmp_path: Path, model_dir: Path
) -> None:
    tampered = tampered_copy(model_dir, tmp_path / "tampered")
    with pytest.raises(FailedPrecondition, match="model"):
        await start_mesh(tmp_path / "data", PANTREE_MODEL_PATH=str(tampered))
