"""Which servicers a process serves, built from one configuration: one step or all of them."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

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
from pantree_common.logging import LoggingConfig
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
) -> list[Service]:
    """The servicers for `steps`, in pipeline order."""
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
    return create_server(
        config.server, lambda address: build_services(steps, config, address, today), internal
    )


def log_config(config: MeshConfig) -> None:
    """Log every setting once at start-up; secrets are masked."""
    log.info(
        "configuration",
        extra={"settings": {s.env_var: s.value for s in config_loader.settings(config)}},
    )
