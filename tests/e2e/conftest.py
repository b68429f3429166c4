"""`pantree serve ...` as a real subprocess, ready when its health check says SERVING."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
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


def start_server(
    tmp_path: Path,
    port: int,
    step: str = "all",
    *,
    host: str = "127.0.0.1",
    launcher: Sequence[str] = (),
    **env: str,
) -> ServerProcess:
    """`pantree serve STEP` on host:port, run through `launcher` (for example `ip netns exec
    NS`), once its health check says SERVING."""
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
            [*launcher, str(BIN / "pantree"), "serve", step, "--port", str(port), "--host", host],
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
    address = f"{host}:{port}"
    try:
        wait_serving(address, process, log_path)
    except BaseException:
        process.kill()
        raise
    return ServerProcess(process, address, log_path, data_dir)


STEPS = ("simulation", "vectors", "frequency", "insights", "recommendation")


@dataclass
class SplitMesh:
    """One process per step plus an orchestrator that dials them by address."""

    tmp_path: Path
    steps: dict[str, ServerProcess]
    orchestrator: ServerProcess
    launchers: Mapping[str, Sequence[str]]
    env: dict[str, str]

    def restart(self, step: str) -> ServerProcess:
        """Start `step` again on its old address (after it died)."""
        old = self.steps[step]
        host, port = old.address.rsplit(":", 1)
        self.steps[step] = start_server(
            self.tmp_path / step,
            int(port),
            step,
            host=host,
            launcher=self.launchers.get(step, ()),
            **self.env,
        )
        return self.steps[step]

    def stop(self) -> list[int]:
        """SIGTERM the orchestrator first, then the steps; their exit codes."""
        return [server.stop() for server in (self.orchestrator, *self.steps.values())]


def start_split_mesh(
    tmp_path: Path,
    hosts: Mapping[str, str] | None = None,
    launchers: Mapping[str, Sequence[str]] | None = None,
    **env: str,
) -> SplitMesh:
    """The five steps started in parallel, then the orchestrator with their addresses; `hosts`
    and `launchers` per process name (the steps' and "orchestrator"), loopback by default."""
    hosts, launchers = hosts or {}, launchers or {}
    *step_ports, orchestrator_port = free_ports(len(STEPS) + 1)
    running: list[ServerProcess] = []

    def start(step: str, port: int, **extra: str) -> ServerProcess:
        host = hosts.get(step, "127.0.0.1")
        launcher = launchers.get(step, ())
        return start_server(tmp_path / step, port, step, host=host, launcher=launcher, **extra)

    try:
        with ThreadPoolExecutor(len(STEPS)) as pool:
            starting = [
                pool.submit(start, step, port, **env)
                for step, port in zip(STEPS, step_ports, strict=True)
            ]
            errors = [future.exception() for future in starting]
            running.extend(
                f.result() for f, error in zip(starting, errors, strict=True) if not error
            )
            if failed := next((error for error in errors if error), None):
                raise failed
        steps = dict(zip(STEPS, running, strict=True))
        addresses = {f"{step.upper()}_SERVICE_ADDR": s.address for step, s in steps.items()}
        orchestrator = start("orchestrator", orchestrator_port, **env, **addresses)
    except BaseException:
        for server in running:
            server.process.kill()
        raise
    return SplitMesh(tmp_path, steps, orchestrator, launchers, env)


def free_ports(count: int) -> list[int]:
    """`count` distinct TCP ports free right now (held together while chosen)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@pytest.fixture(scope="module")
def mesh_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    [port] = free_ports(1)
    server = start_server(tmp_path_factory.mktemp("mesh"), port)
    yield server
    assert server.stop() == 0, server.log_path.read_text()
