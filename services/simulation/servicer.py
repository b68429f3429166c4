"""gRPC adapter of the simulation step."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Callable

from pantree.simulation.v1 import simulation_service_pb2 as pb
from pantree.simulation.v1 import simulation_service_pb2_grpc as pb_grpc

from pantree_common.domain.seed import seed_spec_of
from pantree_common.server import Context
from services.simulation.config import SimulationConfig
from services.simulation.simulator import Simulator, archetype_protos


def utc_today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


class SimulationServicer(pb_grpc.SimulationServiceServicer):
    def __init__(
        self,
        simulator: Simulator,
        config: SimulationConfig,
        today: Callable[[], dt.date] = utc_today,
    ) -> None:
        self._simulator = simulator
        self._delay_s = config.month_delay_ms / 1000
        self._today = today

    async def SimulateHistory(
        self, request: pb.SimulateHistoryRequest, context: Context
    ) -> AsyncIterator[pb.SimulateHistoryResponse]:
        spec = seed_spec_of(request, self._today())
        for month in self._simulator.months(spec):
            yield pb.SimulateHistoryResponse(month=month)
            if self._delay_s and month.month_index < month.month_count:
                await asyncio.sleep(self._delay_s)

    async def ListArchetypes(
        self, request: pb.ListArchetypesRequest, context: Context
    ) -> pb.ListArchetypesResponse:
        return pb.ListArchetypesResponse(archetypes=archetype_protos())
