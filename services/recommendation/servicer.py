"""gRPC adapter of the recommendation step."""

from __future__ import annotations

import asyncio
import logging

from pantree.domain.v1 import offer_pb2
from pantree.recommendation.v1 import recommendation_service_pb2 as pb
from pantree.recommendation.v1 import recommendation_service_pb2_grpc as pb_grpc

from pantree_common.metrics import SCORING_PATHS
from pantree_common.server import Context
from services.recommendation.config import RecommendationConfig
from services.recommendation.model import SubscriptionModel
from services.recommendation.model import load as load_model
from services.recommendation.scoring import rank, validate_rank_request

log = logging.getLogger("pantree.recommendation")


class RecommendationServicer(pb_grpc.RecommendationServiceServicer):
    def __init__(self, config: RecommendationConfig) -> None:
        self._config = config
        self._model: SubscriptionModel | None = None

    async def start(self) -> None:
        """Load the trained model when one is configured; without one, offers are scored by the
        statistics and say so (scored_by)."""
        if self._config.model_path:
            self._model = await asyncio.to_thread(load_model, self._config.model_path)
            log.info(
                "model loaded",
                extra={"path": self._config.model_path, "dataset": self._model.info.dataset},
            )

    async def close(self) -> None:
        self._model = None

    async def RankCandidates(
        self, request: pb.RankCandidatesRequest, context: Context
    ) -> pb.RankCandidatesResponse:
        validate_rank_request(request)
        response = rank(request, self._config, self._model)
        path = offer_pb2.ScoringPath.Name(response.scored_by).removeprefix("SCORING_PATH_")
        SCORING_PATHS.labels(path.lower()).inc()
        return response
