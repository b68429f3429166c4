"""Fault 3: the real dependencies slowed to 0, 0.2, 2 and 10 s per answer: a Milvus server
(behind a delaying TCP proxy), a SageMaker endpoint (the runtime wire protocol in front of the
real model server) and an OpenAI-compatible language model. Recommend and ProcessSeed keep their
deadlines by taking the fallbacks: offers without similar products, scored in-process, explained
by rules. Latency percentiles and fallback rates go to docs/RELIABILITY.md."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from pantree.domain.v1 import offer_pb2
from pantree.orchestrator.v1 import orchestrator_service_pb2 as pb
from prometheus_client import REGISTRY

from services.recommendation import model as model_module
from services.vectors.servicer import VectorServicer
from tests.histories import rhythmic_history
from tests.milvus_server import MilvusServer, start_milvus_server
from tests.openai_server import FakeOpenAI, Reply, grounded_model, serve_openai
from tests.reliability.delay_proxy import DelayProxy, delay_proxy
from tests.reliability.harness import DEFINED, millis, percentile, record_figures
from tests.service.conftest import Mesh, seed_request, start_mesh, stop_mesh
from tests.unit.recommendation.fake_sagemaker import (
    ENDPOINT,
    FakeRuntime,
    Fault,
    fake_runtime,
    trained_model,
    use_dummy_credentials,
)

DELAYS_S = (0.0, 0.2, 2.0, 10.0)
RECOMMEND_DEADLINE_S = 2.0
PROCESS_SEED_DEADLINE_S = 10.0
SLACK_S = 0.25
"""What a call may take beyond its deadline: the client's own bookkeeping on a busy box."""
RECOMMENDS, RECOMMEND_CONCURRENCY, SEEDS = 20, 5, 6


@dataclass
class Calls:
    """One RPC's results under one delay."""

    fell_back: Callable[[Any], bool] | None
    """Whether a response took the fallback; None where the RPC never uses the dependency."""
    seconds: list[float] = field(default_factory=list)
    codes: list[str] = field(default_factory=list)
    fallbacks: int = 0

    def figures(self, deadline_s: float) -> dict[str, object]:
        return {
            "calls": len(self.codes),
            "ok": self.codes.count("OK"),
            "codes": sorted(set(self.codes)),
            "p50_ms": millis(percentile(self.seconds, 50)),
            "p99_ms": millis(percentile(self.seconds, 99)),
            "max_ms": millis(max(self.seconds)),
            "fallback_rate": None
            if self.fell_back is None
            else round(self.fallbacks / max(1, self.codes.count("OK")), 3),
            "deadline_ms": millis(deadline_s),
        }

    def check(self, deadline_s: float, all_ok: bool) -> None:
        assert max(self.seconds) <= deadline_s + SLACK_S, self.figures(deadline_s)
        assert {grpc.StatusCode[c] for c in self.codes} <= DEFINED, self.codes
        if all_ok:
            assert set(self.codes) == {"OK"}, self.figures(deadline_s)


def unique_history() -> pb.RecommendRequest:
    """A history whose product names were never searched: the similar-product lookup cannot be
    answered from the vectors step's cache and reaches the store."""
    history = rhythmic_history()
    for product in history.products:
        product.name = f"{product.name} {uuid.uuid4().hex[:8]}"
    return pb.RecommendRequest(history=history)


async def recommend(mesh: Mesh, calls: Calls) -> None:
    started = time.monotonic()
    try:
        response = await mesh.orchestrator.Recommend(unique_history(), timeout=RECOMMEND_DEADLINE_S)
        calls.fallbacks += bool(calls.fell_back and calls.fell_back(response))
        calls.codes.append("OK")
    except grpc.aio.AioRpcError as error:
        calls.codes.append(error.code().name)
    calls.seconds.append(time.monotonic() - started)


async def process_seed(mesh: Mesh, seed: int, calls: Calls) -> None:
    started = time.monotonic()
    try:
        events = [
            event
            async for event in mesh.orchestrator.ProcessSeed(
                seed_request(random_seed=seed), timeout=PROCESS_SEED_DEADLINE_S
            )
        ]
        [offers] = [e.recommendations for e in events if e.HasField("recommendations")]
        calls.fallbacks += bool(calls.fell_back and calls.fell_back(offers))
        calls.codes.append("OK")
    except grpc.aio.AioRpcError as error:
        calls.codes.append(error.code().name)
    calls.seconds.append(time.monotonic() - started)


async def under_delays(
    dependency: str,
    mesh: Mesh,
    set_delay: Callable[[float], None],
    fell_back: Callable[[Any], bool],
    seeds_ok_up_to_s: float = 10.0,
    recommend_uses_it: bool = True,
) -> None:
    """Recommend and ProcessSeed at every delay; figures recorded, deadlines checked."""
    figures: dict[str, object] = {}
    for delay in DELAYS_S:
        set_delay(delay)
        recommends = Calls(fell_back if recommend_uses_it else None)
        seeds = Calls(fell_back)
        for _ in range(RECOMMENDS // RECOMMEND_CONCURRENCY):
            await asyncio.gather(
                *(recommend(mesh, recommends) for _ in range(RECOMMEND_CONCURRENCY))
            )
        await asyncio.gather(*(process_seed(mesh, i, seeds) for i in range(SEEDS)))
        figures[f"{delay:g}s"] = {
            "Recommend": recommends.figures(RECOMMEND_DEADLINE_S),
            "ProcessSeed": seeds.figures(PROCESS_SEED_DEADLINE_S),
        }
        record_figures(f"slow-{dependency}", figures)
        recommends.check(RECOMMEND_DEADLINE_S, all_ok=True)
        seeds.check(PROCESS_SEED_DEADLINE_S, all_ok=delay <= seeds_ok_up_to_s)
    set_delay(0.0)


def without_related(response: pb.RecommendResponse | pb.Recommendations) -> bool:
    return not any(offer.related_products for offer in response.offers)


async def test_a_slow_similar_product_search_costs_only_the_similar_products(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    search = VectorServicer.SearchSimilarProducts

    async def slow_search(self: VectorServicer, request: Any, context: Any) -> Any:
        await asyncio.sleep(10)
        return await search(self, request, context)

    monkeypatch.setattr(VectorServicer, "SearchSimilarProducts", slow_search)
    skipped = {"step": "vectors", "code": "DEADLINE_EXCEEDED"}
    before = REGISTRY.get_sample_value("pantree_skipped_steps_total", skipped) or 0.0
    mesh = await start_mesh(tmp_path)
    try:
        started = time.monotonic()
        response = await mesh.orchestrator.Recommend(unique_history(), timeout=1.0)
        took = time.monotonic() - started
    finally:
        await stop_mesh(mesh)
    assert took < 1.0
    assert response.offers and without_related(response)
    assert REGISTRY.get_sample_value("pantree_skipped_steps_total", skipped) == before + 1


@pytest.fixture(scope="module")
def milvus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MilvusServer]:
    server = start_milvus_server(tmp_path_factory.mktemp("milvus"))
    yield server
    server.stop()


@pytest.fixture
async def proxied_mesh(
    milvus: MilvusServer, tmp_path: Path
) -> AsyncIterator[tuple[Mesh, DelayProxy]]:
    host, port = milvus.uri.removeprefix("http://").split(":")
    with delay_proxy(host, int(port)) as proxy:
        mesh = await start_mesh(tmp_path, PANTREE_MILVUS_URI=f"http://{proxy.address}")
        try:
            yield mesh, proxy
        finally:
            proxy.delay_s = 0.0
            await stop_mesh(mesh)


@pytest.mark.chaos
@pytest.mark.timeout(600)
async def test_a_slow_milvus(proxied_mesh: tuple[Mesh, DelayProxy]) -> None:
    mesh, proxy = proxied_mesh

    def set_delay(seconds: float) -> None:
        proxy.delay_s = seconds

    # The profile write has no fallback (nothing is dropped unsaid): past the deadline, the
    # stream ends with a status instead.
    await under_delays("milvus", mesh, set_delay, without_related, seeds_ok_up_to_s=2.0)


@pytest.mark.chaos
@pytest.mark.timeout(600)
async def test_a_slow_sagemaker_endpoint(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    use_dummy_credentials(monkeypatch, tmp_path)
    model_dir = model_module.save(trained_model(), tmp_path / "model")
    runtime: FakeRuntime
    with fake_runtime(trained_model()) as runtime:
        mesh = await start_mesh(
            tmp_path,
            PANTREE_MODEL_PATH=str(model_dir),
            PANTREE_SAGEMAKER_ENDPOINT=ENDPOINT,
            PANTREE_SAGEMAKER_ENDPOINT_URL=runtime.url,
        )

        def set_delay(seconds: float) -> None:
            runtime.always = Fault(delay_s=seconds) if seconds else None

        def not_sagemaker(response: Any) -> bool:
            return bool(response.scored_by != offer_pb2.SCORING_PATH_SAGEMAKER)

        try:
            await under_delays("sagemaker", mesh, set_delay, not_sagemaker)
        finally:
            await stop_mesh(mesh)


@pytest.mark.chaos
@pytest.mark.timeout(600)
async def test_a_slow_language_model(tmp_path: Path) -> None:
    model: FakeOpenAI
    with serve_openai(grounded_model) as model:
        mesh = await start_mesh(
            tmp_path,
            PANTREE_LLM_BASE_URL=f"{model.url}/v1",
            PANTREE_LLM_CACHE_SIZE="0",  # every call reaches the model
            PANTREE_LLM_REQUESTS_PER_MINUTE="100000",  # measure the delay, not the rate limit
            PANTREE_LLM_TOKENS_PER_MINUTE="100000000",
        )

        def set_delay(seconds: float) -> None:
            model.answer = lambda path, body: Reply(
                **{**vars(grounded_model(path, body)), "delay_s": seconds}
            )

        def no_llm_insight(response: Any) -> bool:
            return not any(
                offer.insight_source == offer_pb2.INSIGHT_SOURCE_LLM for offer in response.offers
            )

        try:
            # Recommend, the hot path, never asks for insights.
            await under_delays("llm", mesh, set_delay, no_llm_insight, recommend_uses_it=False)
        finally:
            await stop_mesh(mesh)
