"""Real servers on port 0 with real stubs: the mesh as a client sees it, minus processes."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pantree.domain.v1 import product_pb2
from pantree.orchestrator.v1 import orchestrator_service_pb2 as pb
from pantree.orchestrator.v1.orchestrator_service_pb2_grpc import OrchestratorServiceStub

from pantree_common import config as config_loader
from pantree_common.server import PantreeServer
from services.mesh import STEPS, MeshConfig, create_mesh_server

TODAY = dt.date(2026, 11, 26)


def mesh_config(data_dir: Path, **env: str) -> MeshConfig:
    return config_loader.load(
        MeshConfig,
        {
            "PORT": "0",
            "PANTREE_HOST": "127.0.0.1",
            "PANTREE_DATA_DIR": str(data_dir),
            "PANTREE_EMBEDDER": "hashing",  # fast start; MiniLM is tested in tests/unit
            "PANTREE_CATALOG": "builtin",  # instant; the CJ catalog has its own tests
            "PANTREE_METRICS_PORT": "0",
            **env,
        },
    )


@dataclass
class Mesh:
    server: PantreeServer
    channel: grpc.aio.Channel

    @property
    def orchestrator(self) -> OrchestratorServiceStub:
        return OrchestratorServiceStub(self.channel)

    @property
    def health(self) -> health_pb2_grpc.HealthStub:
        return health_pb2_grpc.HealthStub(self.channel)

    async def health_of(self, service: str) -> int:
        response = await self.health.Check(health_pb2.HealthCheckRequest(service=service))
        return int(response.status)


async def start_mesh(
    data_dir: Path, steps: Sequence[str] = STEPS, server: PantreeServer | None = None, **env: str
) -> Mesh:
    if server is None:
        server = create_mesh_server(steps, mesh_config(data_dir, **env), today=lambda: TODAY)
    await server.start()
    return Mesh(server, grpc.aio.insecure_channel(server.address))


async def stop_mesh(mesh: Mesh) -> None:
    await mesh.channel.close()
    await mesh.server.stop(grace=0)


@pytest.fixture
async def mesh(tmp_path: Path) -> AsyncIterator[Mesh]:
    running = await start_mesh(tmp_path)
    yield running
    await stop_mesh(running)


def seed_request(**overrides: object) -> pb.ProcessSeedRequest:
    fields: dict[str, object] = {
        "customer_id": "shopper-1",
        "archetype": "busy_family",
        "seed_items": [product_pb2.SeedItem(name=n) for n in ("milk", "eggs", "bread", "coffee")],
        "months": 6,
        "random_seed": 42,
    }
    fields.update(overrides)
    request = pb.ProcessSeedRequest(**fields)  # type: ignore[arg-type]
    request.start_date.year, request.start_date.month, request.start_date.day = 2026, 3, 1
    return request
