"""Gateway and mesh in this test's event loop, where the server side of a stream can be watched:
a client that goes away must end the gRPC stream, not leave it running to its end."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import REGISTRY
from websockets.asyncio.client import connect

from gateway import server as gateway_server
from gateway.app import SEED_EXAMPLE
from gateway.config import GatewayConfig
from pantree_common.client import ClientConfig
from pantree_common.server import ServerConfig
from tests.conftest import unused_port
from tests.service.conftest import Mesh, start_mesh, stop_mesh

MONTH_DELAY_MS = 150
MONTHS = 24  # a full stream takes MONTHS * MONTH_DELAY_MS = 3.6 s


async def start_gateway(orchestrator: str) -> gateway_server.RunningGateway:
    config = GatewayConfig(host="127.0.0.1", port=0, orchestrator_addr=orchestrator)
    server = gateway_server.create_server(config, ClientConfig(), ServerConfig().max_message_bytes)
    return await gateway_server.start(server)


@pytest.fixture
async def slow_mesh(tmp_path: Path) -> AsyncIterator[Mesh]:
    mesh = await start_mesh(tmp_path, PANTREE_SIMULATION_MONTH_DELAY_MS=str(MONTH_DELAY_MS))
    yield mesh
    await stop_mesh(mesh)


def handled_ok() -> float:
    labels = {
        "grpc_service": "pantree.orchestrator.v1.OrchestratorService",
        "grpc_method": "ProcessSeed",
        "grpc_code": "OK",
    }
    return REGISTRY.get_sample_value("grpc_server_handled_total", labels) or 0.0


async def test_a_client_that_disconnects_cancels_the_grpc_stream(slow_mesh: Mesh) -> None:
    web = await start_gateway(slow_mesh.server.address)
    completed_before = handled_ok()
    try:
        url = web.url.replace("http://", "ws://") + "ws/stream/leaver"
        async with connect(url) as socket:
            await socket.send(json.dumps(SEED_EXAMPLE | {"months": MONTHS}))
            started = time.monotonic()
            while "month" not in json.loads(await socket.recv()):
                pass
        assert slow_mesh.server.drain.in_flight > 0  # the stream was still running
        for _ in range(100):
            if not slow_mesh.server.drain.in_flight:
                break
            await asyncio.sleep(0.02)
        assert slow_mesh.server.drain.in_flight == 0
        assert time.monotonic() - started < MONTHS * MONTH_DELAY_MS / 1000 / 2
        assert handled_ok() == completed_before  # ended early, never completed
    finally:
        await web.stop()


async def test_an_unreachable_orchestrator_is_503_everywhere() -> None:
    web = await start_gateway(f"127.0.0.1:{unused_port()}")
    try:
        async with httpx.AsyncClient(base_url=web.url, timeout=10) as client:
            for path in ("/health", "/api/v1/archetypes"):
                response = await client.get(path)
                assert response.status_code == 503, path
                assert response.json()["error"]["status"] == "UNAVAILABLE"
        async with connect(web.url.replace("http://", "ws://") + "ws/stream/x") as socket:
            await socket.send(json.dumps(SEED_EXAMPLE))
            message = json.loads(await socket.recv())
            await socket.wait_closed()
        assert message["error"]["code"] == 503
        assert socket.close_code == 4503
    finally:
        await web.stop()
