"""Prometheus series move with the traffic they describe."""

from __future__ import annotations

import asyncio
import urllib.request
from pathlib import Path

import grpc
import pytest
from pantree.orchestrator.v1 import orchestrator_service_pb2 as pb
from prometheus_client import REGISTRY

from tests.histories import rhythmic_history
from tests.service.conftest import Mesh, seed_request, start_mesh, stop_mesh

ORCHESTRATOR = "pantree.orchestrator.v1.OrchestratorService"


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as page:
        return str(page.read().decode())


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_calls_are_counted_by_method_and_code(mesh: Mesh) -> None:
    ok = {"grpc_service": ORCHESTRATOR, "grpc_method": "Recommend", "grpc_code": "OK"}
    bad = ok | {"grpc_code": "INVALID_ARGUMENT"}
    step = {
        "grpc_service": "pantree.frequency.v1.FrequencyService",
        "grpc_method": "AnalyzeHistory",
        "grpc_code": "OK",
    }
    before = {
        k: sample("grpc_server_handled_total", **v)
        for k, v in {"ok": ok, "bad": bad, "step": step}.items()
    }
    heuristic = sample("pantree_offers_scored_total", path="heuristic")
    await mesh.orchestrator.Recommend(pb.RecommendRequest(history=rhythmic_history()), timeout=10)
    with pytest.raises(grpc.aio.AioRpcError):
        await mesh.orchestrator.Recommend(pb.RecommendRequest(), timeout=10)
    assert sample("grpc_server_handled_total", **ok) == before["ok"] + 1
    assert sample("grpc_server_handled_total", **bad) == before["bad"] + 1
    assert sample("grpc_server_handled_total", **step) == before["step"] + 1
    assert sample("pantree_offers_scored_total", path="heuristic") == heuristic + 1
    assert (
        sample(
            "grpc_server_handling_seconds_count", grpc_service=ORCHESTRATOR, grpc_method="Recommend"
        )
        >= 2
    )


async def test_stream_messages_are_counted(mesh: Mesh) -> None:
    labels = {"grpc_service": ORCHESTRATOR, "grpc_method": "ProcessSeed"}
    before = sample("grpc_server_msg_sent_total", **labels)
    events = [e async for e in mesh.orchestrator.ProcessSeed(seed_request(months=2), timeout=30)]
    assert sample("grpc_server_msg_sent_total", **labels) == before + len(events)


async def test_metrics_are_served_on_their_own_port(tmp_path: Path, free_port: int) -> None:
    mesh = await start_mesh(tmp_path, PANTREE_METRICS_PORT=str(free_port))
    try:
        await mesh.orchestrator.ListArchetypes(pb.ListArchetypesRequest(), timeout=5)
        text = await asyncio.to_thread(scrape, f"http://127.0.0.1:{free_port}/metrics")
    finally:
        await stop_mesh(mesh)
    assert 'grpc_server_handled_total{grpc_code="OK",grpc_method="ListArchetypes"' in text
