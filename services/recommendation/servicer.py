"""gRPC adapter of the recommendation step."""

from __future__ import annotations

from pantree.domain.v1 import offer_pb2
from pantree.recommendation.v1 import recommendation_service_pb2 as pb
from pantree.recommendation.v1 import recommendation_service_pb2_grpc as pb_grpc

from pantree_common.metrics import SCORING_PATHS
from pantree_common.server import Context
from services.recommendation.config import RecommendationConfig
from services.recommendation.scoring import rank, validate_rank_request


class RecommendationServicer(pb_grpc.RecommendationServiceServicer):
    def __init__(self, config: RecommendationConfig) -> None:
        self._config = config

    async def RankCandidates(
        self, request: pb.RankCandidatesRequest, context: Context
    ) -> pb.RankCandidatesResponse:
        validate_rank_request(request)
        response = rank(request, self._config)
        path = offer_pb2.ScoringPath.Name(response.scored_by).removeprefix("SCORING_PATH_")
        SCORING_PATHS.labels(path.lower()).inc()
        return response
