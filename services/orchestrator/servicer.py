"""gRPC adapter of the orchestrator; owns the channels to the steps."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import aclosing

import grpc
from pantree.frequency.v1.frequency_service_pb2_grpc import FrequencyServiceStub
from pantree.insights.v1.insights_service_pb2_grpc import InsightsServiceStub
from pantree.orchestrator.v1 import orchestrator_service_pb2 as pb
from pantree.orchestrator.v1 import orchestrator_service_pb2_grpc as pb_grpc
from pantree.recommendation.v1.recommendation_service_pb2_grpc import RecommendationServiceStub
from pantree.simulation.v1.simulation_service_pb2_grpc import SimulationServiceStub
from pantree.vectors.v1.vectors_service_pb2_grpc import VectorServiceStub

import pantree_common
from pantree_common.client import ClientConfig, create_channel
from pantree_common.config import Setting
from pantree_common.descriptors import SERVICES
from pantree_common.errors import FailedPrecondition
from pantree_common.server import Context
from services.orchestrator.config import OrchestratorConfig
from services.orchestrator.pipeline import Pipeline, Steps


class OrchestratorServicer(pb_grpc.OrchestratorServiceServicer):
    def __init__(
        self,
        config: OrchestratorConfig,
        client: ClientConfig,
        max_message_bytes: int,
        upstreams: Mapping[str, str],
        settings: Sequence[Setting],
        today: Callable[[], dt.date],
        own_address: str = "",
        in_process: Callable[[], grpc.aio.Channel] | None = None,
    ) -> None:
        """`in_process` opens the channel for the steps at `own_address` (this very server)."""
        self._config = config
        self._client = client
        self._max_message_bytes = max_message_bytes
        self._upstreams = dict(upstreams)
        self._settings = sorted((s for s in settings if not s.secret), key=lambda s: s.env_var)
        self._today = today
        self._own_address = own_address
        self._in_process = in_process
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._pipeline: Pipeline | None = None

    async def start(self) -> None:
        """One channel per distinct address (all-in-one mode shares one, in-process unless
        PANTREE_IN_PROCESS_CALLS is off)."""
        for address in self._upstreams.values():
            if address in self._channels:
                continue
            if self._in_process is not None and address == self._own_address:
                self._channels[address] = self._in_process()
            else:
                services = [SERVICES[s] for s, a in self._upstreams.items() if a == address]
                self._channels[address] = create_channel(
                    address, self._client, self._max_message_bytes, services
                )
        channel = self._channels.__getitem__
        steps = Steps(
            simulation=SimulationServiceStub(channel(self._upstreams["simulation"])),
            vectors=VectorServiceStub(channel(self._upstreams["vectors"])),
            frequency=FrequencyServiceStub(channel(self._upstreams["frequency"])),
            insights=InsightsServiceStub(channel(self._upstreams["insights"])),
            recommendation=RecommendationServiceStub(channel(self._upstreams["recommendation"])),
        )
        self._pipeline = Pipeline(steps, self._config, self._today)

    async def close(self) -> None:
        channels, self._channels = self._channels, {}
        self._pipeline = None
        for channel in channels.values():
            await channel.close(grace=None)

    @property
    def pipeline(self) -> Pipeline:
        if self._pipeline is None:
            raise FailedPrecondition("the orchestrator is not started")
        return self._pipeline

    async def ProcessSeed(
        self, request: pb.ProcessSeedRequest, context: Context
    ) -> AsyncIterator[pb.ProcessSeedResponse]:
        # Closed as soon as the call ends, however it ends: the stream's place among the
        # streams waiting for their first month (pipeline.FirstMonths) must not outlive it.
        async with aclosing(self.pipeline.process_seed(request)) as events:
            async for event in events:
                yield event

    async def Recommend(
        self, request: pb.RecommendRequest, context: Context
    ) -> pb.RecommendResponse:
        return await self.pipeline.recommend(request)

    async def ListArchetypes(
        self, request: pb.ListArchetypesRequest, context: Context
    ) -> pb.ListArchetypesResponse:
        return pb.ListArchetypesResponse(archetypes=await self.pipeline.archetypes())

    async def GetConfig(
        self, request: pb.GetConfigRequest, context: Context
    ) -> pb.GetConfigResponse:
        return pb.GetConfigResponse(
            version=pantree_common.__version__,
            entries=[
                pb.ConfigEntry(env_var=s.env_var, value=s.value, description=s.description)
                for s in self._settings
            ],
        )
