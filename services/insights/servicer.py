"""gRPC adapter of the insights step (deterministic fallback; an LLM path comes later)."""

from __future__ import annotations

from pantree.insights.v1 import insights_service_pb2 as pb
from pantree.insights.v1 import insights_service_pb2_grpc as pb_grpc

from pantree_common.server import Context
from services.insights.fallback import enrich, validate_candidates


class InsightsServicer(pb_grpc.InsightsServiceServicer):
    async def EnrichCandidates(
        self, request: pb.EnrichCandidatesRequest, context: Context
    ) -> pb.EnrichCandidatesResponse:
        validate_candidates(request)
        return pb.EnrichCandidatesResponse(insights=enrich(request.candidates, request.archetype))
