"""`pantree serve ...` as a real subprocess, ready when its health check says SERVING."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

BIN = Path(sys.executable).parent


@dataclass
class ServerProcess:
    process: subprocess.Popen[str]
    address: str
    log_path: Path
    data_dir: Path

    def stop(self, timeout: float = 20) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise


def wait_serving(
    address: str, process: subprocess.Popen[str], log_path: Path, timeout: float = 60
) -> None:
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{log_path.read_text()}")
            try:
                status = stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status
                if status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.2)
    raise TimeoutError(f"{address} not SERVING after {timeout}s:\n{log_path.read_text()}")


def start_server(tmp_path: Path, port: int, step: str = "all", **env: str) -> ServerProcess:
    tmp_path.mkdir(parents=True, exist_ok=True)
    log_path = tmp_path / f"server-{step}-{port}.log"
    data_dir = tmp_path / "data"
    environment = {
        **os.environ,
        "PANTREE_DATA_DIR": str(data_dir),
        "PANTREE_EMBEDDER": "hashing",  # fast start; MiniLM is tested in tests/unit
        "PANTREE_CATALOG": "builtin",  # instant; the CJ catalog has its own tests
        "PANTREE_SHUTDOWN_GRACE_S": "10",
        "PANTREE_METRICS_PORT": "0",
        **env,
    }
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [str(BIN / "pantree"), "serve", step, "--port", str(port), "--host", "127.0.0.1"],
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
    address = f"127.0.0.1:{port}"
    try:
        wait_serving(address, process, log_path)
    except BaseException:
        process.kill()
        raise
    return ServerProcess(process, address, log_path, data_dir)


@pytest.fixture(scope="module")
def mesh_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = start_server(tmp_path_factory.mktemp("mesh"), port)
    yield server
    assert server.stop() == 0, server.log_path.read_text()
