"""Which servicers a process serves, built from one configuration: one step or all of them."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace

import grpc
from pantree.frequency.v1 import frequency_service_pb2_grpc
from pantree.insights.v1 import insights_service_pb2_grpc
from pantree.orchestrator.v1 import orchestrator_service_pb2_grpc
from pantree.recommendation.v1 import recommendation_service_pb2_grpc
from pantree.simulation.v1 import simulation_service_pb2_grpc
from pantree.vectors.v1 import vectors_service_pb2_grpc

from pantree_common import config as config_loader
from pantree_common.client import ClientConfig
from pantree_common.descriptors import SERVICES
from pantree_common.domain.catalog import CatalogConfig, open_catalog, use_catalog
from pantree_common.errors import ConfigError
from pantree_common.local import LocalChannel
from pantree_common.logging import LoggingConfig
from pantree_common.processes import serve_processes
from pantree_common.server import PantreeServer, ServerConfig, Service, create_server
from services.frequency.config import FrequencyConfig
from services.frequency.servicer import FrequencyServicer
from services.insights.config import InsightsConfig
from services.insights.servicer import InsightsServicer
from services.orchestrator.config import OrchestratorConfig
from services.orchestrator.servicer import OrchestratorServicer
from services.recommendation.config import RecommendationConfig
from services.recommendation.servicer import RecommendationServicer
from services.simulation.config import SimulationConfig
from services.simulation.servicer import SimulationServicer, utc_today
from services.simulation.simulator import Simulator
from services.vectors.config import VectorsConfig
from services.vectors.embedders import collection_prefix, load_embedder
from services.vectors.index import VectorIndex
from services.vectors.servicer import VectorServicer
from services.vectors.store import EXACT, IVF, MilvusStore

log = logging.getLogger("pantree.mesh")

STEPS = ("simulation", "vectors", "frequency", "insights", "recommendation", "orchestrator")


@dataclass(frozen=True)
class MeshConfig:
    """Everything a Pantree process reads from its environment."""

    server: ServerConfig = field(default_factory=ServerConfig)
    client: ClientConfig = field(default_factory=ClientConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    catalog: CatalogConfig = field(default_factory=CatalogConfig)
    simulation: SimulationConfig = field(default_factory=SimulationConfig)
    vectors: VectorsConfig = field(default_factory=VectorsConfig)
    frequency: FrequencyConfig = field(default_factory=FrequencyConfig)
    insights: InsightsConfig = field(default_factory=InsightsConfig)
    recommendation: RecommendationConfig = field(default_factory=RecommendationConfig)
    orchestrator: OrchestratorConfig = field(default_factory=OrchestratorConfig)


def _open_vector_index(config: VectorsConfig) -> Callable[[], VectorIndex]:
    def open_index() -> VectorIndex:
        embedder = load_embedder(config)
        store = MilvusStore(
            config.store_uri,
            embedder.dimensions,
            token=config.milvus_token,
            timeout_s=config.milvus_timeout_s,
            collection_prefix=collection_prefix(embedder),
            index=EXACT if config.milvus_index == "flat" else IVF,
        )
        return VectorIndex(embedder, store)

    return open_index


def build_services(
    steps: Sequence[str],
    config: MeshConfig,
    own_address: str,
    today: Callable[[], dt.date] = utc_today,
    in_process: Callable[[], grpc.aio.Channel] | None = None,
) -> list[Service]:
    """The servicers for `steps`, in pipeline order; the orchestrator calls the steps at
    `own_address` through `in_process` when given (else over the network)."""
    unknown = sorted(set(steps) - set(STEPS))
    if unknown:
        raise ValueError(f"unknown steps {unknown}; expected some of {', '.join(STEPS)}")
    use_catalog(open_catalog(config.catalog.catalog, config.vectors.data_dir))
    services: list[Service] = []
    if "simulation" in steps:
        services.append(
            Service(
                SERVICES["simulation"].full_name,
                SimulationServicer(Simulator(), config.simulation, today),
                simulation_service_pb2_grpc.add_SimulationServiceServicer_to_server,
            )
        )
    if "vectors" in steps:
        services.append(
            Service(
                SERVICES["vectors"].full_name,
                VectorServicer(_open_vector_index(config.vectors)),
                vectors_service_pb2_grpc.add_VectorServiceServicer_to_server,
            )
        )
    if "frequency" in steps:
        services.append(
            Service(
                SERVICES["frequency"].full_name,
                FrequencyServicer(config.frequency),
                frequency_service_pb2_grpc.add_FrequencyServiceServicer_to_server,
            )
        )
    if "insights" in steps:
        services.append(
            Service(
                SERVICES["insights"].full_name,
                InsightsServicer(config.insights),
                insights_service_pb2_grpc.add_InsightsServiceServicer_to_server,
            )
        )
    if "recommendation" in steps:
        services.append(
            Service(
                SERVICES["recommendation"].full_name,
                RecommendationServicer(config.recommendation),
                recommendation_service_pb2_grpc.add_RecommendationServiceServicer_to_server,
            )
        )
    if "orchestrator" in steps:
        services.append(
            Service(
                SERVICES["orchestrator"].full_name,
                OrchestratorServicer(
                    config.orchestrator,
                    config.client,
                    config.server.max_message_bytes,
                    config.orchestrator.upstreams(own_address, frozenset(steps)),
                    list(config_loader.settings(config)),
                    today,
                    own_address,
                    in_process,
                ),
                orchestrator_service_pb2_grpc.add_OrchestratorServiceServicer_to_server,
            )
        )
    return services


def create_mesh_server(
    steps: Sequence[str], config: MeshConfig, today: Callable[[], dt.date] = utc_today
) -> PantreeServer:
    """A bound server carrying `steps`; the orchestrator, if present, dials its steps by gRPC
    (the same server for the steps it carries, which therefore keep serving while it drains)."""
    internal = []
    if "orchestrator" in steps:
        internal = [SERVICES[s].full_name for s in steps if s != "orchestrator"]

    def in_process() -> grpc.aio.Channel:
        """Opened by the orchestrator when it starts, once `server` below exists."""
        return LocalChannel(server, config.client, config.server.max_message_bytes)

    local = in_process if config.orchestrator.in_process_calls else None
    server = create_server(
        config.server,
        lambda address: build_services(steps, config, address, today, local),
        internal,
    )
    return server


def serve_mesh(
    steps: Sequence[str],
    config: MeshConfig,
    extend: Callable[[PantreeServer], None] = lambda server: None,
) -> int:
    """Serve `steps` until SIGTERM or SIGINT: in this process, or in PANTREE_PROCESSES processes
    sharing the port (pantree_common.processes). `extend` may register more handlers on each
    process's server before it starts (the benchmarks' no-op method)."""

    async def run(
        worker_config: MeshConfig, ready: Callable[[], None] | None = None, first: bool = True
    ) -> None:
        server = create_mesh_server(steps, worker_config)
        extend(server)
        await server.serve_until_signalled(ready, listen_first=first)

    if config.server.processes == 1:
        asyncio.run(run(config))
        return 0
    with _shared_store(steps, config) as shared:

        def worker(index: int, port: int, ready: Callable[[], None]) -> None:
            metrics_port = shared.server.metrics_port + index if shared.server.metrics_port else 0
            server = replace(shared.server, port=port, metrics_port=metrics_port)
            # Only the first process answers probes while it starts; the others listen once
            # they can serve (PantreeServer.start).
            asyncio.run(run(replace(shared, server=server), ready, first=index == 0))

        return serve_processes(
            config.server.processes, config.server.host, config.server.port, worker
        )


@contextlib.contextmanager
def _shared_store(steps: Sequence[str], config: MeshConfig) -> Iterator[MeshConfig]:
    """The configuration the server processes share. Milvus Lite's data directory opens in one
    process only, so when several processes serve the vectors step on Milvus Lite, one
    `milvus-lite server` process on that directory serves them all (as a Milvus server would)."""
    if "vectors" not in steps or config.vectors.milvus_uri:
        yield config
        return
    with socket.socket() as probe:  # a free port, released for the store's server to bind
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "milvus_lite", "server", "--data-dir"]
    store = subprocess.Popen(
        [*command, config.vectors.store_uri, "--host", "127.0.0.1", "--port", str(port)]
    )
    try:
        _wait_listening(store, port)
        uri = f"http://127.0.0.1:{port}"
        log.info("milvus lite shared by the server processes", extra={"uri": uri})
        yield replace(config, vectors=replace(config.vectors, milvus_uri=uri))
    finally:
        store.terminate()
        store.wait()


def _wait_listening(process: subprocess.Popen[bytes], port: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while process.poll() is None and time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.1)
    raise ConfigError(f"milvus-lite server did not listen on port {port} (exit {process.poll()})")


def log_config(config: MeshConfig) -> None:
    """Log every setting once at start-up; secrets are masked."""
    log.info(
        "configuration",
        extra={"settings": {s.env_var: s.value for s in config_loader.settings(config)}},
    )
