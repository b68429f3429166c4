"""One process per step, as in a cluster: the orchestrator finds its steps by address."""

from __future__ import annotations

from pathlib import Path

import grpc
from pantree.domain.v1 import product_pb2
from pantree.orchestrator.v1 import orchestrator_service_pb2 as pb
from pantree.orchestrator.v1.orchestrator_service_pb2_grpc import OrchestratorServiceStub

from tests.e2e.conftest import start_split_mesh
from tests.histories import rhythmic_history


def test_a_seed_flows_through_six_processes(tmp_path: Path) -> None:
    mesh = start_split_mesh(tmp_path)
    try:
        with grpc.insecure_channel(mesh.orchestrator.address) as channel:
            stub = OrchestratorServiceStub(channel)
            events = list(
                stub.ProcessSeed(
                    pb.ProcessSeedRequest(
                        archetype="busy_family",
                        months=3,
                        seed_items=[product_pb2.SeedItem(name=n) for n in ("milk", "eggs")],
                    ),
                    timeout=30,
                )
            )
            response = stub.Recommend(pb.RecommendRequest(history=rhythmic_history()), timeout=10)
        assert sum(1 for e in events if e.HasField("month")) == 3
        assert events[-1].HasField("summary")
        assert response.offers[0].product.product_id == "p-1001"
    finally:
        codes = mesh.stop()
    assert codes == [0] * len(codes)
