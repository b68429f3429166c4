"""gRPC adapter of the insights step: rule-based insights always, and a language model's in their
place where one is configured, accepted and in time."""

from __future__ import annotations

from collections import Counter

from pantree.domain.v1 import offer_pb2
from pantree.insights.v1 import insights_service_pb2 as pb
from pantree.insights.v1 import insights_service_pb2_grpc as pb_grpc

from pantree_common import context as call_context
from pantree_common.metrics import INSIGHTS
from pantree_common.server import Context
from services.insights.config import InsightsConfig
from services.insights.fallback import enrich, validate_candidates
from services.insights.llm_insights import LLMInsights, connect

RESPONSE_MARGIN_S = 0.05
"""Kept back from the caller's deadline to build and send the response."""
_SOURCES = {offer_pb2.INSIGHT_SOURCE_FALLBACK: "fallback", offer_pb2.INSIGHT_SOURCE_LLM: "llm"}


class InsightsServicer(pb_grpc.InsightsServiceServicer):
    def __init__(self, config: InsightsConfig) -> None:
        self._config = config
        self._llm: LLMInsights | None = None

    async def start(self) -> None:
        """Build the model client when PANTREE_LLM_BASE_URL is set (no request is made: the
        step serves rule-based insights whatever the model's state)."""
        if self._config.llm_enabled:
            self._llm = connect(self._config)

    async def close(self) -> None:
        if self._llm is not None:
            llm, self._llm = self._llm, None
            await llm.close()

    async def EnrichCandidates(
        self, request: pb.EnrichCandidatesRequest, context: Context
    ) -> pb.EnrichCandidatesResponse:
        validate_candidates(request)
        insights = enrich(request.candidates, request.archetype)
        if self._llm is not None:
            remaining = call_context.remaining_seconds()
            insights = await self._llm.improve(
                request.candidates,
                insights,
                request.archetype,
                None if remaining is None else remaining - RESPONSE_MARGIN_S,
            )
        for source, count in Counter(insight.source for insight in insights).items():
            INSIGHTS.labels(_SOURCES[source]).inc(count)
        return pb.EnrichCandidatesResponse(insights=insights)
