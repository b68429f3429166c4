"""Recommend through the whole mesh with the recommendation step scoring on a SageMaker endpoint
(real boto3, a local runtime in front of the real model server): the orchestrator's deadline
reaches the endpoint call, and a dead endpoint leaves the in-process model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pantree.domain.v1 import offer_pb2
from pantree.orchestrator.v1 import orchestrator_service_pb2 as pb

from services.recommendation import model as model_module
from tests.histories import rhythmic_history
from tests.service.conftest import start_mesh, stop_mesh
from tests.unit.recommendation.fake_sagemaker import (
    ENDPOINT,
    FakeRuntime,
    Fault,
    fake_runtime,
    trained_model,
    use_dummy_credentials,
)


@pytest.fixture
def runtime(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeRuntime]:
    use_dummy_credentials(monkeypatch, tmp_path)
    with fake_runtime(trained_model()) as running:
        yield running


async def recommend_with(runtime: FakeRuntime, data_dir: Path) -> pb.RecommendResponse:
    model_dir = model_module.save(trained_model(), data_dir / "model")
    mesh = await start_mesh(
        data_dir,
        PANTREE_MODEL_PATH=str(model_dir),
        PANTREE_SAGEMAKER_ENDPOINT=ENDPOINT,
        PANTREE_SAGEMAKER_ENDPOINT_URL=runtime.url,
        PANTREE_SAGEMAKER_BACKOFF_S="0.01",
    )
    try:
        return await mesh.orchestrator.Recommend(
            pb.RecommendRequest(history=rhythmic_history()), timeout=10
        )
    finally:
        await stop_mesh(mesh)


async def test_recommend_is_scored_by_the_sagemaker_endpoint(
    runtime: FakeRuntime, tmp_path: Path
) -> None:
    response = await recommend_with(runtime, tmp_path)
    assert response.scored_by == offer_pb2.SCORING_PATH_SAGEMAKER
    assert response.offers
    assert len(runtime.calls) == 1


async def test_a_failing_endpoint_leaves_the_model_in_process(
    runtime: FakeRuntime, tmp_path: Path
) -> None:
    runtime.always = Fault(503, "ServiceUnavailable", {"message": "down"})
    response = await recommend_with(runtime, tmp_path)
    assert response.scored_by == offer_pb2.SCORING_PATH_LOCAL_MODEL
    assert response.offers
