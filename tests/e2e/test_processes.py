"""`pantree serve all --processes 2`: two server processes share the port (SO_REUSEPORT) and
one Milvus Lite server, both answer (each new connection goes to one of them at random), and
SIGTERM stops every one of them."""

from __future__ import annotations

import re
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import grpc
from pantree.orchestrator.v1 import orchestrator_service_pb2 as pb
from pantree.orchestrator.v1 import orchestrator_service_pb2_grpc as pb_grpc

from tests.e2e.conftest import free_ports, start_server
from tests.histories import rhythmic_history


def _recommends(metrics_port: int) -> float:
    """Recommend calls one process answered (process i serves metrics on the port + i)."""
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read()
    except OSError:  # not started yet
        return 0
    found = re.findall(
        rb'grpc_server_handled_total\{[^}]*grpc_method="Recommend"[^}]*\} ([\d.e+]+)', text
    )
    return sum(float(value) for value in found)


def _two_free_ports() -> int:
    """A port free together with the next one."""
    for _ in range(100):
        [first] = free_ports(1)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", first + 1))
            except OSError:
                continue
        return first
    raise RuntimeError("no two consecutive free ports")


def _children(pid: int) -> list[int]:
    command = ["ps", "--ppid", str(pid), "-o", "pid="]
    listed = subprocess.run(command, capture_output=True, text=True, check=True)
    return [int(line) for line in listed.stdout.split()]


def test_two_processes_share_the_port_and_stop_together(tmp_path: Path) -> None:
    [port] = free_ports(1)
    metrics = _two_free_ports()
    server = start_server(tmp_path, port, PANTREE_PROCESSES="2", PANTREE_METRICS_PORT=str(metrics))
    try:
        request = pb.RecommendRequest(history=rhythmic_history())
        options = [("grpc.use_local_subchannel_pool", 1)]  # a new connection per channel
        deadline = time.monotonic() + 60  # the second process starts once the first serves
        while min(_recommends(metrics), _recommends(metrics + 1)) == 0:
            assert time.monotonic() < deadline, "a process never answered"
            with grpc.insecure_channel(server.address, options=options) as channel:
                answer = pb_grpc.OrchestratorServiceStub(channel).Recommend(request, timeout=30)
                assert answer.offers
        children = _children(server.process.pid)
        assert len(children) == 3  # two servers and the shared milvus-lite server
    finally:
        assert server.stop() == 0, server.log_path.read_text()
    assert not [pid for pid in children if Path(f"/proc/{pid}").exists()]
