"""The one server interceptor: request id, deadline context, error mapping and access logs.

Every handler exception leaves the server as a deliberate status code: domain errors by their
own code, failures of an upstream step with that step's code, anything else as INTERNAL with a
generic message (the details go to the log, never to the caller). Nothing surfaces as UNKNOWN.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, cast

import grpc
from google.rpc import code_pb2, status_pb2
from grpc_status import rpc_status

from pantree_common import context, metrics
from pantree_common.errors import DeadlineExceeded, InvalidArgument, PantreeError, UpstreamError

log = logging.getLogger("pantree.rpc")

StreamBehavior = Callable[..., AsyncIterator[Any]]
if TYPE_CHECKING:
    Handler = grpc.RpcMethodHandler[Any, Any]


class Drain:
    """In-flight call accounting for graceful shutdown and overload.

    While draining, new calls are refused with UNAVAILABLE; with `max_in_flight` set, a call
    that would exceed it is refused at once with RESOURCE_EXHAUSTED, before any work. Calls to
    `internal_services` are exempt from both: in all-in-one mode the orchestrator's in-flight
    streams still need their steps on this very server to finish. gRPC's health and reflection
    services are never counted (ServerInterceptor passes them through), so health answers under
    any load; gRPC's own maximum_concurrent_rpcs would refuse them too.
    """

    def __init__(self, max_in_flight: int = 0) -> None:
        self.in_flight = 0
        self.max_in_flight = max_in_flight
        self.draining = False
        self.internal_services: frozenset[str] = frozenset()
        self._limited = 0  # calls in flight that count against max_in_flight
        self._idle = asyncio.Event()
        self._idle.set()

    def _internal(self, method: str) -> bool:
        return method.split("/")[1] in self.internal_services

    def refusal(self, method: str) -> tuple[grpc.StatusCode, str] | None:
        """The status a new call to `method` is turned away with, or None to admit it."""
        if self._internal(method):
            return None
        if self.draining:
            return grpc.StatusCode.UNAVAILABLE, _SHUTTING_DOWN
        if 0 < self.max_in_flight <= self._limited:
            return grpc.StatusCode.RESOURCE_EXHAUSTED, (
                f"server busy: {self.max_in_flight} calls in flight; retry with backoff"
            )
        return None

    def enter(self, method: str) -> None:
        self.in_flight += 1
        self._limited += not self._internal(method)
        self._idle.clear()

    def leave(self, method: str) -> None:
        self.in_flight -= 1
        self._limited -= not self._internal(method)
        if self.in_flight == 0:
            self._idle.set()

    async def wait_idle(self, within_s: float) -> bool:
        """True when every call finished within `within_s` seconds."""
        try:
            await asyncio.wait_for(self._idle.wait(), within_s)
        except TimeoutError:
            return False
        return True


def status_for(exc: BaseException) -> status_pb2.Status:
    """The status a handler exception is reported with."""
    if isinstance(exc, PantreeError):
        return exc.to_status()
    if isinstance(exc, grpc.aio.AioRpcError):
        return UpstreamError.from_rpc_error("upstream", exc).to_status()
    return status_pb2.Status(
        code=code_pb2.INTERNAL, message="internal error; see the server log for this request id"
    )


def _enter(context_: grpc.aio.ServicerContext[Any, Any]) -> float:
    """Set the call's request id and deadline; returns its start time. Each call runs in a task
    of its own, so the values are not reset afterwards: a stream abandoned by its caller (a
    deadline, a cancel) while it waited at a `yield` is closed later from another task, whose
    context a reset token would not belong to."""
    metadata = dict(context_.invocation_metadata() or ())
    request_id = str(metadata.get(context.REQUEST_ID_METADATA_KEY) or context.new_request_id())
    remaining = context_.time_remaining()
    context.deadline.set(None if remaining is None else time.monotonic() + remaining)
    context.request_id.set(request_id)
    return time.perf_counter()


def _check_deadline() -> None:
    """A caller whose deadline has passed has given up: start no work for it and send it no
    late result (gRPC's own deadline timers can fire milliseconds late on a busy process)."""
    remaining = context.remaining_seconds()
    if remaining is not None and remaining <= 0:
        raise DeadlineExceeded("the call's deadline has passed")


async def _abort(
    context_: grpc.aio.ServicerContext[Any, Any], method: str, exc: Exception, started: float
) -> None:
    status = status_for(exc)
    code = grpc.StatusCode(next(c for c in grpc.StatusCode if c.value[0] == status.code))
    metrics.record(method, code.name, time.perf_counter() - started)
    if isinstance(exc, PantreeError):
        log.info(
            "rpc failed",
            extra={
                "method": method,
                "code": code.name,
                "error": status.message,
                "ms": round((time.perf_counter() - started) * 1000, 3),
            },
        )
    else:
        log.exception("rpc crashed", extra={"method": method, "code": code.name})
    wire = rpc_status.to_status(status)
    await context_.abort(wire.code, wire.details, wire.trailing_metadata)


def _done(method: str, started: float, messages: int = 0) -> None:
    seconds = time.perf_counter() - started
    metrics.record(method, "OK", seconds, messages)
    if log.isEnabledFor(logging.DEBUG):
        extra = {"method": method, "code": "OK", "ms": round(seconds * 1000, 3)}
        log.debug("rpc done", extra=extra | ({"messages": messages} if messages else {}))


_SHUTTING_DOWN = "server is shutting down; retry on another replica"


class _Undecodable:
    """Stands in for a request whose bytes are not the expected message."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


def _tolerant(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """A deserializer that hands bad bytes to the handler instead of failing inside gRPC, which
    would answer INTERNAL: a malformed request is the caller's error (INVALID_ARGUMENT)."""
    if deserialize is None:
        return None

    def parse(data: bytes) -> Any:
        try:
            return deserialize(data)
        except Exception as exc:
            return _Undecodable(f"{type(exc).__name__}: {exc}"[:200])

    return parse


def _check_decoded(request: Any) -> None:
    if isinstance(request, _Undecodable):
        raise InvalidArgument.single("request", f"not a valid message ({request.reason})")


def _wrap_unary(
    method: str, behavior: Callable[..., Awaitable[Any]], drain: Drain
) -> Callable[..., Any]:
    async def handle(request: Any, context_: grpc.aio.ServicerContext[Any, Any]) -> Any:
        if refused := drain.refusal(method):
            metrics.record(method, refused[0].name, 0.0)
            await context_.abort(*refused)
        started = _enter(context_)
        drain.enter(method)
        try:
            _check_decoded(request)
            _check_deadline()
            response = await behavior(request, context_)
            _check_deadline()
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await _abort(context_, method, exc, started)
        else:
            _done(method, started)
            return response
        finally:
            drain.leave(method)

    return handle


def _wrap_stream(method: str, behavior: StreamBehavior, drain: Drain) -> Callable[..., Any]:
    async def handle(
        request: Any, context_: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        if refused := drain.refusal(method):
            metrics.record(method, refused[0].name, 0.0)
            await context_.abort(*refused)
        started = _enter(context_)
        drain.enter(method)
        sent = 0
        try:
            _check_decoded(request)
            _check_deadline()
            async for response in behavior(request, context_):
                _check_deadline()
                yield response
                sent += 1
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await _abort(context_, method, exc, started)
        else:
            _done(method, started, sent)
        finally:
            drain.leave(method)

    return handle


class ServerInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Wraps Pantree's unary-unary and unary-stream handlers; other kinds pass through."""

    def __init__(self, drain: Drain) -> None:
        self._drain = drain
        self._wrapped: dict[str, Handler] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler:
        method = handler_call_details.method
        wrapped = self._wrapped.get(method)
        if wrapped is not None:
            return wrapped
        handler = await continuation(handler_call_details)
        if handler is None or method.startswith("/grpc."):
            # Health and reflection are gRPC's own: never refused, never waited for.
            return handler
        if handler.unary_unary is not None:
            wrapped = grpc.unary_unary_rpc_method_handler(
                _wrap_unary(method, handler.unary_unary, self._drain),
                request_deserializer=_tolerant(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        elif handler.unary_stream is not None:
            wrapped = grpc.unary_stream_rpc_method_handler(
                _wrap_stream(method, cast(StreamBehavior, handler.unary_stream), self._drain),
                request_deserializer=_tolerant(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        else:
            return handler
        # Handlers are fixed per method once the server runs: wrap each one once.
        self._wrapped[method] = wrapped
        return wrapped
