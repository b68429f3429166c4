"""The first link of the recommendation step's scoring chain: the model behind a SageMaker
endpoint (`pantree model-server` in a container), then the same model in-process, then the
statistics' heuristic.

The endpoint is called with boto3's `sagemaker-runtime` `invoke_endpoint` and the JSON of
invocation.py. botocore's own retries are off; tenacity retries throttling (ThrottlingException,
ModelNotReadyException, HTTP 429), server errors (InternalFailure, ServiceUnavailable, any 5xx,
and ModelError when the container answered 429 or 5xx) and dropped connections, with the
jittered exponential backoff of pantree_common.retry; never a 4xx (ValidationError, ModelError
with a 4xx from the container), which would fail again, nor a timeout, which spent the time.

Each call's connect and read timeouts are min(PANTREE_SAGEMAKER_TIMEOUT_S, the caller's remaining
deadline - DEADLINE_MARGIN_S), rounded down to TIMEOUT_STEP_S (one boto3 client per step), and
no attempt or backoff starts that could not finish in time, so the in-process fallback still
answers within the deadline. The read timeout bounds each socket read, not the whole answer.

Whatever goes wrong (an error after the retries, a timeout, an unreachable endpoint, an answer
that is not a valid response to the request, an endpoint without a model) is one failure: the
step falls back in-process and logs it once with the reason. A circuit breaker counts consecutive
failures: after PANTREE_SAGEMAKER_BREAKER_FAILURES it opens and the endpoint is not called for
PANTREE_SAGEMAKER_BREAKER_COOLDOWN_S; then one call tries it (half-open) and closes the breaker
on success or opens it again on failure.
"""

from __future__ import annotations

import enum
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import boto3  # type: ignore[import-untyped]
import tenacity
from botocore.config import Config  # type: ignore[import-untyped]
from botocore.exceptions import (  # type: ignore[import-untyped]
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)
from pantree.domain.v1 import analysis_pb2, product_pb2

from pantree_common.errors import InvalidArgument
from pantree_common.retry import Backoff, Retryable, log_retry, retryable_status
from services.recommendation import invocation
from services.recommendation.endpoint_config import SageMakerConfig
from services.recommendation.model import Predictions

log = logging.getLogger("pantree.recommendation.sagemaker")

DEADLINE_MARGIN_S = 0.1
"""Time kept from the caller's deadline for the in-process fallback and the reply."""
TIMEOUT_STEP_S = 0.1
"""Per-call timeouts round down to a multiple of this; less than one step is not worth a call."""
MAX_BACKOFF_S = 1.0
_RETRYABLE_CODES = frozenset(
    {"ThrottlingException", "ModelNotReadyException", "InternalFailure", "ServiceUnavailable"}
)
_EXCERPT_CHARS = 200


class EndpointError(Exception):
    """A failed endpoint call that another attempt would not mend; the reason is fit for a log
    (no request data, no credentials)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Endpoint(Protocol):
    """A model server reachable over the network: an /invocations body in, the answer out."""

    @property
    def name(self) -> str: ...

    def invoke(self, body: bytes, timeout_s: float) -> bytes:
        """The answer's body; raises Retryable (throttled, 5xx) or EndpointError."""
        ...


class SageMakerRuntime:
    """An Endpoint over boto3's `sagemaker-runtime` client; safe to call from several threads."""

    def __init__(self, config: SageMakerConfig, environ: Mapping[str, str] = os.environ) -> None:
        self.name = config.endpoint
        self._endpoint_url = config.endpoint_url or None
        self._session = boto3.session.Session(region_name=config.region_name(environ))
        self._clients: dict[int, Any] = {}
        self._lock = threading.Lock()
        self._client(_steps(config.timeout_s))  # a bad region or URL fails now, not per call

    def _client(self, steps: int) -> Any:
        """The client whose connect and read timeouts are `steps` x TIMEOUT_STEP_S."""
        with self._lock:
            client = self._clients.get(steps)
            if client is None:
                config = Config(
                    connect_timeout=steps * TIMEOUT_STEP_S,
                    read_timeout=steps * TIMEOUT_STEP_S,
                    retries={"total_max_attempts": 1, "mode": "standard"},  # tenacity retries
                )
                client = self._session.client(
                    "sagemaker-runtime", endpoint_url=self._endpoint_url, config=config
                )
                self._clients[steps] = client
        return client

    def invoke(self, body: bytes, timeout_s: float) -> bytes:
        steps = _steps(timeout_s)
        try:
            answer = self._client(steps).invoke_endpoint(
                EndpointName=self.name,
                ContentType=invocation.JSON,
                Accept=invocation.JSON,
                Body=body,
            )
            content = answer["Body"].read()
        except ClientError as exc:
            raise _classify(exc) from None
        except (ReadTimeoutError, ConnectTimeoutError):
            raise EndpointError(f"no answer within {steps * TIMEOUT_STEP_S:.1f} s") from None
        except (EndpointConnectionError, ConnectionClosedError) as exc:
            raise Retryable(f"cannot reach it: {exc}") from None
        except BotoCoreError as exc:  # no credentials, a malformed answer, ...
            raise EndpointError(f"cannot call it: {exc}") from None
        if invocation.media_type(answer.get("ContentType")) != invocation.JSON:
            raise EndpointError(f"it answered {answer.get('ContentType')!r}, not JSON")
        return bytes(content)


def _steps(timeout_s: float) -> int:
    """A timeout in whole TIMEOUT_STEP_S, rounded down (at least one)."""
    return max(1, math.floor(timeout_s / TIMEOUT_STEP_S + 1e-9))


def _classify(exc: ClientError) -> Retryable | EndpointError:
    """A SageMaker runtime error: Retryable for throttling and 5xx, else EndpointError."""
    response = exc.response
    error = response.get("Error", {})
    code = str(error.get("Code", ""))
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    said = str(error.get("Message", ""))[:_EXCERPT_CHARS]
    if code == "ModelError":
        original = response.get("OriginalStatusCode")
        message = str(response.get("OriginalMessage", ""))[:_EXCERPT_CHARS]
        reason = f"ModelError: the container answered {original}: {message}"
        retryable = isinstance(original, int) and retryable_status(original)
    else:
        reason = f"{code or 'HTTP'} {status}: {said}"
        retryable = code in _RETRYABLE_CODES or retryable_status(status)
    return Retryable(reason) if retryable else EndpointError(reason)


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Closed: calls go through. Open (after `failures` consecutive failures): none do until
    `cooldown_s` has passed. Half-open (then): one trial call goes through; its success closes
    the breaker, its failure opens it again. Safe to use from several threads."""

    def __init__(
        self,
        name: str,
        failures: int,
        cooldown_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._name = name
        self._threshold = failures
        self._cooldown_s = cooldown_s
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at = 0.0
        self._trial = False
        self._state = BreakerState.CLOSED

    @property
    def state(self) -> BreakerState:
        with self._lock:
            if self._state is BreakerState.OPEN and self._cooled_down():
                return BreakerState.HALF_OPEN
            return self._state

    def _cooled_down(self) -> bool:
        return self._clock() - self._opened_at >= self._cooldown_s

    def allow(self) -> bool:
        """Whether a call may go now; in half-open, the first asker gets the one trial."""
        with self._lock:
            if self._state is BreakerState.CLOSED:
                return True
            if self._state is BreakerState.OPEN:
                if not self._cooled_down():
                    return False
                self._state = BreakerState.HALF_OPEN
                log.info("endpoint breaker half-open: one call tries it", extra=self._extra())
            if self._trial:
                return False
            self._trial = True
            return True

    def record_success(self) -> None:
        with self._lock:
            if self._state is not BreakerState.CLOSED:
                log.info("endpoint breaker closed: the endpoint answers again", extra=self._extra())
            self._state, self._failures, self._trial = BreakerState.CLOSED, 0, False

    def record_failure(self) -> None:
        with self._lock:
            self._failures += 1
            self._trial = False
            if self._state is BreakerState.HALF_OPEN or self._failures >= self._threshold:
                if self._state is not BreakerState.OPEN:
                    log.warning(
                        "endpoint breaker open: not calling it for the cool-down",
                        extra={**self._extra(), "cooldown_s": self._cooldown_s},
                    )
                self._state, self._opened_at = BreakerState.OPEN, self._clock()

    def _extra(self) -> dict[str, Any]:
        return {"endpoint": self._name, "consecutive_failures": self._failures}


class EndpointScorer:
    """The endpoint link of the chain for one customer at a time; `fallback` names the next
    link, for the log."""

    def __init__(
        self,
        endpoint: Endpoint,
        config: SageMakerConfig,
        fallback: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.endpoint = endpoint
        self.fallback = fallback
        self._config = config
        self._clock = clock
        self.breaker = CircuitBreaker(
            endpoint.name, config.breaker_failures, config.breaker_cooldown_s, clock
        )

    def predict(
        self,
        analysis: analysis_pb2.HistoryAnalysis,
        products: Mapping[str, product_pb2.Product],
        time_remaining_s: float | None,
    ) -> Predictions | None:
        """The endpoint's predictions for the analysis' items (as SubscriptionModel would give
        them), or None when the chain goes on: no items, the deadline too close, the breaker
        open, or the call failed. Blocks: run it in a worker thread."""
        if not analysis.items:
            return None
        now = self._clock()
        deadline = now + (math.inf if time_remaining_s is None else time_remaining_s)
        deadline -= DEADLINE_MARGIN_S
        if deadline - now < TIMEOUT_STEP_S:
            self._fell_back(f"the caller's deadline leaves under {TIMEOUT_STEP_S} s for it")
            return None
        if not self.breaker.allow():
            return None
        request = invocation.request_from_analyses([analysis], products)
        succeeded = False
        try:
            response = invocation.parse_response(self._call(request.to_json(), deadline), request)
            if response.scored_by != invocation.SCORED_BY_MODEL:
                raise EndpointError(f"it has no model (it answered scored_by={response.scored_by})")
            succeeded = True
            return invocation.predictions(response, request)[0]
        except EndpointError as exc:
            self._fell_back(exc.reason)
        except InvalidArgument as exc:
            self._fell_back(f"its answer is malformed: {exc.message[:_EXCERPT_CHARS]}")
        finally:  # even an unexpected error must not leave a half-open trial claimed
            (self.breaker.record_success if succeeded else self.breaker.record_failure)()
        return None

    def _call(self, body: bytes, deadline: float) -> bytes:
        """One call, retried while the error allows and the deadline leaves time for it."""
        config = self._config

        def attempt() -> bytes:
            left = deadline - self._clock()
            if left < TIMEOUT_STEP_S:
                raise EndpointError("the deadline ran out before the next attempt")
            return self.endpoint.invoke(body, min(config.timeout_s, left))

        attempts = config.retries + 1
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(Retryable),
            # No backoff that would leave less than one step before the deadline.
            stop=tenacity.stop_after_attempt(attempts)
            | tenacity.stop_before_delay(deadline - self._clock() - TIMEOUT_STEP_S),
            wait=Backoff(config.backoff_s, MAX_BACKOFF_S),
            before_sleep=log_retry(log, f"sagemaker endpoint {self.endpoint.name}", attempts),
            reraise=True,
        )
        try:
            return retrying(attempt)
        except Retryable as exc:
            tried = retrying.statistics.get("attempt_number", 1)
            raise EndpointError(f"{exc.detail} (after {tried} attempts)") from None

    def _fell_back(self, reason: str) -> None:
        log.warning(
            "sagemaker endpoint not used, scoring in-process",
            extra={"endpoint": self.endpoint.name, "reason": reason, "fallback": self.fallback},
        )
