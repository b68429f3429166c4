"""The mesh as its users meet it: a `pantree serve all` process, grpcurl, the CLI, signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import json_format
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pantree.domain.v1 import product_pb2
from pantree.orchestrator.v1 import orchestrator_service_pb2 as pb
from pantree.orchestrator.v1.orchestrator_service_pb2_grpc import OrchestratorServiceStub

from tests.e2e.conftest import BIN, ServerProcess, start_server
from tests.histories import rhythmic_history
from tests.reliability.harness import record_figures

SERVING = health_pb2.HealthCheckResponse.SERVING
STEP_SERVICES = {
    "pantree.simulation.v1.SimulationService",
    "pantree.vectors.v1.VectorService",
    "pantree.frequency.v1.FrequencyService",
    "pantree.insights.v1.InsightsService",
    "pantree.recommendation.v1.RecommendationService",
    "pantree.orchestrator.v1.OrchestratorService",
}


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)


def grpcurl(*args: str) -> subprocess.CompletedProcess[str]:
    return run(str(BIN / "grpcurl"), *args)


def json_objects(text: str) -> list[dict[str, Any]]:
    """grpcurl prints one pretty-printed JSON object per message."""
    decoder = json.JSONDecoder()
    objects, position = [], 0
    text = text.strip()
    while position < len(text):
        obj, end = decoder.raw_decode(text, position)
        objects.append(obj)
        position = end
        while position < len(text) and text[position].isspace():
            position += 1
    return objects


def test_grpcurl_lists_and_describes_every_service(mesh_process: ServerProcess) -> None:
    listed = grpcurl("-plaintext", mesh_process.address, "list")
    assert listed.returncode == 0, listed.stderr
    services = set(listed.stdout.split())
    assert services >= STEP_SERVICES | {"grpc.health.v1.Health"}
    described = grpcurl(
        "-plaintext",
        mesh_process.address,
        "describe",
        "pantree.orchestrator.v1.OrchestratorService",
    )
    assert described.returncode == 0, described.stderr
    assert (
        "rpc ProcessSeed ( .pantree.orchestrator.v1.ProcessSeedRequest ) returns ( stream"
        in described.stdout
    )
    message = grpcurl(
        "-plaintext",
        mesh_process.address,
        "describe",
        "pantree.orchestrator.v1.ProcessSeedResponse",
    )
    for member in ("progress", "month", "analysis", "recommendations", "summary"):
        assert member in message.stdout


def test_grpcurl_streams_process_seed(mesh_process: ServerProcess) -> None:
    request = {
        "archetype": "busy_family",
        "seedItems": [{"name": "milk"}, {"name": "eggs"}],
        "months": 6,
        "randomSeed": 3,
    }
    result = grpcurl(
        "-plaintext",
        "-d",
        json.dumps(request),
        mesh_process.address,
        "pantree.orchestrator.v1.OrchestratorService/ProcessSeed",
    )
    assert result.returncode == 0, result.stderr
    events = json_objects(result.stdout)
    months = [e["month"] for e in events if "month" in e]
    # grpcurl prints the proto field names (month_index), not the lowerCamel JSON names.
    assert [m["month_index"] for m in months] == [1, 2, 3, 4, 5, 6]
    assert "recommendations" in events[-2] and "summary" in events[-1]


def test_grpcurl_gets_invalid_argument_for_a_bad_seed(mesh_process: ServerProcess) -> None:
    request = {"archetype": "pirate", "seedItems": [{"name": "milk"}]}
    result = grpcurl(
        "-plaintext",
        "-d",
        json.dumps(request),
        mesh_process.address,
        "pantree.orchestrator.v1.OrchestratorService/ProcessSeed",
    )
    assert result.returncode != 0
    assert "InvalidArgument" in result.stderr and "archetype" in result.stderr


def test_cli_process_seed_prints_one_json_event_per_line(mesh_process: ServerProcess) -> None:
    result = run(
        str(BIN / "pantree"),
        "process-seed",
        "--target",
        mesh_process.address,
        "--archetype",
        "health_conscious",
        "--items",
        "milk,eggs,bread",
        "--months",
        "4",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert [e["month"]["monthIndex"] for e in events if "month" in e] == [1, 2, 3, 4]
    assert "summary" in events[-1]


def test_cli_reports_status_and_field_on_error(mesh_process: ServerProcess) -> None:
    result = run(
        str(BIN / "pantree"),
        "process-seed",
        "--target",
        mesh_process.address,
        "--months",
        "30",
        "--json",
    )
    assert result.returncode == 1
    assert "INVALID_ARGUMENT" in result.stderr and "months" in result.stderr


def test_cli_recommend_from_a_history_file(mesh_process: ServerProcess, tmp_path: Path) -> None:
    path = tmp_path / "history.json"
    path.write_text(json_format.MessageToJson(rhythmic_history()))
    result = run(
        str(BIN / "pantree"),
        "recommend",
        "--target",
        mesh_process.address,
        "--history",
        str(path),
        "--json",
    )
    assert result.returncode == 0, result.stderr
    response = json.loads(result.stdout)
    assert response["offers"][0]["product"]["productId"] == "p-1001"
    assert response["scoredBy"] == "SCORING_PATH_HEURISTIC"


def test_python_client_recommend(mesh_process: ServerProcess) -> None:
    with grpc.insecure_channel(mesh_process.address) as channel:
        response = OrchestratorServiceStub(channel).Recommend(
            pb.RecommendRequest(history=rhythmic_history(), max_offers=2), timeout=10
        )
    assert len(response.offers) == 2


def test_sigterm_drains_in_flight_streams(tmp_path: Path, free_port: int) -> None:
    """Fault 2: SIGTERM with 10 streams in flight: every one completes, a new call meanwhile
    gets UNAVAILABLE, and the process exits well within its grace period."""
    grace_s = 5.0
    server = start_server(
        tmp_path,
        free_port,
        PANTREE_SIMULATION_MONTH_DELAY_MS="200",
        PANTREE_SHUTDOWN_GRACE_S=str(grace_s),
    )
    request = pb.ProcessSeedRequest(
        archetype="busy_family", months=5, seed_items=[product_pb2.SeedItem(name="milk")]
    )
    try:
        with grpc.insecure_channel(server.address) as channel:
            stub = OrchestratorServiceStub(channel)
            streams = [stub.ProcessSeed(request, timeout=30) for _ in range(10)]
            firsts = [next(stream) for stream in streams]
            signalled = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            health = health_pb2_grpc.HealthStub(channel)
            while health.Check(health_pb2.HealthCheckRequest(), timeout=5).status == SERVING:
                time.sleep(0.01)
            with pytest.raises(grpc.RpcError) as refused:
                stub.Recommend(pb.RecommendRequest(history=rhythmic_history()), timeout=5)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
            events = [[first, *stream] for first, stream in zip(firsts, streams, strict=True)]
            assert [stream.code() for stream in streams] == [grpc.StatusCode.OK] * 10
        for stream_events in events:
            assert sum(1 for e in stream_events if e.HasField("month")) == 5
            assert stream_events[-1].HasField("summary")
        assert server.process.wait(timeout=grace_s) == 0
        exited_after_s = time.monotonic() - signalled
        assert exited_after_s < grace_s
    finally:
        server.stop()
    record_figures(
        "sigterm-drain",
        {
            "streams": 10,
            "completed": 10,
            "grace_s": grace_s,
            "exit_after_sigterm_s": exited_after_s,
        },
    )


def test_one_step_serves_alone(tmp_path: Path, free_port: int) -> None:
    server = start_server(tmp_path, free_port, step="frequency")
    try:
        listed = grpcurl("-plaintext", server.address, "list")
        assert "pantree.frequency.v1.FrequencyService" in listed.stdout
        assert "pantree.orchestrator.v1.OrchestratorService" not in listed.stdout
    finally:
        assert server.stop() == 0


def test_orchestrator_alone_needs_its_step_addresses(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "services.orchestrator"],
        env={**os.environ, "PORT": "0", "PANTREE_HOST": "127.0.0.1", "PANTREE_CATALOG": "builtin"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode != 0
    assert "SIMULATION_SERVICE_ADDR must be set" in result.stderr


def readme_grpcurl_commands() -> list[str]:
    """Every grpcurl command of the README, continuation lines joined."""
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    commands, current = [], ""
    for line in text.splitlines():
        if line.startswith(".venv/bin/grpcurl") or current:
            current += line.rstrip("\\").strip() + " "
            if not line.endswith("\\"):
                commands.append(current.strip())
                current = ""
    return commands


def test_readme_grpcurl_commands_work_as_written(mesh_process: ServerProcess) -> None:
    # The TLS and token ones run against a secured mesh (tests/service/test_security.py).
    commands = [c for c in readme_grpcurl_commands() if "-plaintext" in c]
    assert len(commands) >= 5
    root = Path(__file__).resolve().parents[2]
    for command in commands:
        result = subprocess.run(
            [
                "bash",
                "-c",
                command.replace(".venv/bin/", f"{BIN}/").replace(
                    "localhost:50051", mesh_process.address
                ),
            ],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, f"{command}\n{result.stderr}"
        if "Recommend" in command:
            assert json.loads(result.stdout)["offers"], "the README's history must yield an offer"


def test_a_second_server_on_the_same_data_dir_says_why_it_cannot_start(
    mesh_process: ServerProcess, free_port: int
) -> None:
    result = subprocess.run(
        [str(BIN / "pantree"), "serve", "all", "--port", str(free_port), "--host", "127.0.0.1"],
        env={
            **os.environ,
            "PANTREE_DATA_DIR": str(mesh_process.data_dir),
            "PANTREE_EMBEDDER": "hashing",
            "PANTREE_CATALOG": "builtin",  # instant; the CJ catalog has its own tests
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "cannot start: vector store" in result.stderr
    assert "Traceback" not in result.stderr
