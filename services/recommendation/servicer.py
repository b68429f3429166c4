"""gRPC adapter of the recommendation step."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from pantree.domain.v1 import offer_pb2
from pantree.recommendation.v1 import recommendation_service_pb2 as pb
from pantree.recommendation.v1 import recommendation_service_pb2_grpc as pb_grpc

from pantree_common.metrics import SCORING_PATHS
from pantree_common.server import Context
from services.recommendation.config import RecommendationConfig
from services.recommendation.model import SubscriptionModel
from services.recommendation.model import load as load_model
from services.recommendation.scoring import rank, validate_rank_request

if TYPE_CHECKING:
    from services.recommendation.sagemaker import EndpointScorer

log = logging.getLogger("pantree.recommendation")


class RecommendationServicer(pb_grpc.RecommendationServiceServicer):
    def __init__(self, config: RecommendationConfig) -> None:
        self._config = config
        self._model: SubscriptionModel | None = None
        self._endpoint: EndpointScorer | None = None

    async def start(self) -> None:
        """Load the trained model when one is configured, and reach for the SageMaker endpoint
        when one is named; offers say which of them (or the statistics) scored them."""
        if self._config.model_path:
            self._model = await asyncio.to_thread(load_model, self._config.model_path)
            log.info(
                "model loaded",
                extra={"path": self._config.model_path, "dataset": self._model.info.dataset},
            )
        if self._config.endpoint.endpoint:
            # Imported here: boto3 takes a tenth of a second to import, for this step only.
            from services.recommendation import sagemaker  # noqa: PLC0415

            runtime = await asyncio.to_thread(sagemaker.SageMakerRuntime, self._config.endpoint)
            fallback = "local_model" if self._model else "heuristic"
            self._endpoint = sagemaker.EndpointScorer(runtime, self._config.endpoint, fallback)
            log.info(
                "scoring with the sagemaker endpoint first",
                extra={"endpoint": runtime.name, "fallback": fallback},
            )

    async def close(self) -> None:
        self._model = None
        self._endpoint = None

    async def RankCandidates(
        self, request: pb.RankCandidatesRequest, context: Context
    ) -> pb.RankCandidatesResponse:
        validate_rank_request(request)
        remote = None
        if self._endpoint is not None and request.analysis.items:
            remote = await asyncio.to_thread(
                self._endpoint.predict,
                request.analysis,
                {product.product_id: product for product in request.products},
                context.time_remaining(),
            )
        response = rank(request, self._config, self._model, remote)
        path = offer_pb2.ScoringPath.Name(response.scored_by).removeprefix("SCORING_PATH_")
        SCORING_PATHS.labels(path.lower()).inc()
        return response
