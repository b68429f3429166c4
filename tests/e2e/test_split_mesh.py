"""One process per step, as in a cluster: the orchestrator finds its steps by address."""

from __future__ import annotations

import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
from pantree.domain.v1 import product_pb2
from pantree.orchestrator.v1 import orchestrator_service_pb2 as pb
from pantree.orchestrator.v1.orchestrator_service_pb2_grpc import OrchestratorServiceStub

from tests.e2e.conftest import ServerProcess, start_server
from tests.histories import rhythmic_history

STEPS = ("simulation", "vectors", "frequency", "insights", "recommendation")


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def test_a_seed_flows_through_six_processes(tmp_path: Path) -> None:
    *step_ports, orchestrator_port = free_ports(len(STEPS) + 1)
    running: list[ServerProcess] = []
    try:
        with ThreadPoolExecutor(len(STEPS)) as pool:
            starting = [
                pool.submit(start_server, tmp_path / step, port, step=step)
                for step, port in zip(STEPS, step_ports, strict=True)
            ]
            errors = [future.exception() for future in starting]
            running.extend(
                f.result() for f, error in zip(starting, errors, strict=True) if not error
            )
            if failed := next((error for error in errors if error), None):
                raise failed
        addresses = {
            f"{step.upper()}_SERVICE_ADDR": f"127.0.0.1:{port}"
            for step, port in zip(STEPS, step_ports, strict=True)
        }
        orchestrator = start_server(
            tmp_path / "orchestrator", orchestrator_port, step="orchestrator", **addresses
        )
        running.append(orchestrator)
        with grpc.insecure_channel(orchestrator.address) as channel:
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
        codes = [server.stop() for server in reversed(running)]
    assert codes == [0] * len(running)
