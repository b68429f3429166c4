"""The gateway as browsers meet it: a `pantree serve gateway` process in front of a
`pantree serve all` process, both started once for this folder's tests."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import unused_port
from tests.e2e.conftest import BIN, ServerProcess, start_server

CORS_ORIGIN = "http://shop.example"


@dataclass
class Gateway:
    process: subprocess.Popen[str]
    url: str
    log_path: Path
    mesh: ServerProcess

    def stop(self, timeout: float = 10) -> int:
        self.process.terminate()
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise


def start_gateway(tmp_path: Path, mesh: ServerProcess, timeout: float = 30, **env: str) -> Gateway:
    port = unused_port()
    log_path = tmp_path / "gateway.log"
    environment = {
        **os.environ,
        "PANTREE_GATEWAY_CORS_ORIGINS": CORS_ORIGIN,
        "PANTREE_GATEWAY_MAX_BODY_BYTES": "65536",
        **env,
    }
    command = [str(BIN / "pantree"), "serve", "gateway", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--orchestrator", mesh.address]
    with log_path.open("w") as log:
        process = subprocess.Popen(
            command, env=environment, stdout=log, stderr=subprocess.STDOUT, text=True
        )
    gateway = Gateway(process, f"http://127.0.0.1:{port}", log_path, mesh)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gateway exited early:\n{log_path.read_text()}")
        try:
            if httpx.get(f"{gateway.url}/health", timeout=1).status_code == 200:
                return gateway
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    process.kill()
    raise TimeoutError(f"gateway not healthy after {timeout}s:\n{log_path.read_text()}")


@pytest.fixture(scope="session")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    tmp_path = tmp_path_factory.mktemp("gateway")
    mesh = start_server(tmp_path, unused_port())
    try:
        running = start_gateway(tmp_path, mesh)
        yield running
        assert running.stop() == 0, running.log_path.read_text()
    finally:
        mesh.stop()


@pytest.fixture
def client(gateway: Gateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.url, timeout=30) as http:
        yield http
