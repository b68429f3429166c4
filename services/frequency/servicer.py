"""gRPC adapter of the frequency step."""

from __future__ import annotations

from collections.abc import Callable

from pantree.frequency.v1 import frequency_service_pb2 as pb
from pantree.frequency.v1 import frequency_service_pb2_grpc as pb_grpc

from pantree_common.domain.dates import today_epoch_day
from pantree_common.domain.history import History, history_from_proto
from pantree_common.errors import Collector, FieldViolation, InvalidArgument
from pantree_common.server import Context
from services.frequency.config import MIN_PURCHASES_RANGE, FrequencyConfig
from services.frequency.statistics import analyze, to_protos

MAX_BATCH_HISTORIES = 1_000
MAX_EPOCH_DAY = 2_932_896  # 9999-12-31


class FrequencyServicer(pb_grpc.FrequencyServiceServicer):
    def __init__(self, config: FrequencyConfig, today: Callable[[], int] = today_epoch_day) -> None:
        self._config = config
        self._today = today

    def _settings(self, as_of: int, min_purchases: int) -> tuple[int, int]:
        errors = Collector()
        errors.check(
            0 <= as_of <= MAX_EPOCH_DAY,
            "as_of_epoch_day",
            f"must be 0 (today) or a day up to {MAX_EPOCH_DAY}, got {as_of}",
        )
        low, high = MIN_PURCHASES_RANGE
        errors.check(
            min_purchases == 0 or low <= min_purchases <= high,
            "min_purchases",
            f"must be 0 (default) or {low}-{high}, got {min_purchases}",
        )
        errors.raise_if_any()
        return as_of or self._today(), min_purchases or self._config.min_purchases

    async def AnalyzeHistory(
        self, request: pb.AnalyzeHistoryRequest, context: Context
    ) -> pb.AnalyzeHistoryResponse:
        as_of, min_purchases = self._settings(request.as_of_epoch_day, request.min_purchases)
        history = history_from_proto(request.history, as_of_epoch_day=as_of)
        table = analyze([history], [as_of], min_purchases)
        (analysis,) = to_protos([history], table, [as_of], min_purchases)
        return pb.AnalyzeHistoryResponse(analysis=analysis)

    async def BatchAnalyzeHistories(
        self, request: pb.BatchAnalyzeHistoriesRequest, context: Context
    ) -> pb.BatchAnalyzeHistoriesResponse:
        as_of, min_purchases = self._settings(request.as_of_epoch_day, request.min_purchases)
        count = len(request.histories)
        if not 1 <= count <= MAX_BATCH_HISTORIES:
            raise InvalidArgument.single(
                "histories", f"must hold 1 to {MAX_BATCH_HISTORIES} histories, got {count}"
            )
        histories: list[History] = []
        violations: list[FieldViolation] = []
        for i, message in enumerate(request.histories):
            try:
                histories.append(
                    history_from_proto(message, as_of_epoch_day=as_of, field=f"histories[{i}]")
                )
            except InvalidArgument as exc:
                violations.extend(exc.violations)
        if violations:
            raise InvalidArgument(violations)
        days = [as_of] * count
        table = analyze(histories, days, min_purchases)
        return pb.BatchAnalyzeHistoriesResponse(
            analyses=to_protos(histories, table, days, min_purchases)
        )
