"""An in-process gRPC channel to the services of this same server (all-in-one mode).

`pantree serve all` registers every step on one server and the orchestrator calls them through
their gRPC stubs. Over a real channel each such call crosses HTTP/2 and gRPC's C core twice on
the same two cores: a Recommend (three step calls) paid about four no-op RPCs of transport
before any work (docs/BENCHMARKS.md, "hop cost"). `LocalChannel` is what grpc-java's
InProcessChannel and grpc-go's bufconn are: the same stubs call it, requests and responses are
serialised and parsed by the same generated code (so a step never shares a message object with
its caller and sees exactly the bytes a network caller would send), the server's own
interceptors run in the server's order (authorization, request id, deadline, error mapping,
metrics, drain), and the channel factory's rules set each call's deadline and metadata. Only the
transport is left out: no HTTP/2 framing, no sockets, no C-core completion queues.

What it does not do: retries (an in-process call cannot meet a connection failure), compression,
credentials objects (metadata carries the bearer token, as on plaintext channels), client
streaming (no Pantree step has it), and a server stream's handler runs ahead of its reader
without flow control (Pantree's streams are a few messages long).
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, cast

import grpc

from pantree_common.client import ClientConfig, call_timeout, outbound_metadata
from pantree_common.server import PantreeServer

Handler = Any  # grpc.RpcMethodHandler; its attributes are untyped in grpc-stubs
Lookup = Callable[[grpc.HandlerCallDetails], Awaitable[Handler]]
PEER = "local:in-process"
_END = object()


class _CallDetails(grpc.HandlerCallDetails):
    """What server interceptors see of an incoming call."""

    def __init__(self, method: str, metadata: tuple[tuple[str, str | bytes], ...]) -> None:
        self.method = method
        self.invocation_metadata = metadata


class LocalContext:
    """The part of grpc.aio.ServicerContext that Pantree's interceptors and servicers use."""

    def __init__(self, metadata: tuple[tuple[str, str | bytes], ...], timeout: float) -> None:
        self._metadata = metadata
        self._deadline = time.monotonic() + timeout
        self._code = grpc.StatusCode.UNKNOWN
        self._details = ""
        self._trailing: tuple[tuple[str, str | bytes], ...] = ()

    def invocation_metadata(self) -> tuple[tuple[str, str | bytes], ...]:
        return self._metadata

    def time_remaining(self) -> float:
        return max(0.0, self._deadline - time.monotonic())

    def peer(self) -> str:
        return PEER

    def set_code(self, code: grpc.StatusCode) -> None:
        self._code = code

    def set_details(self, details: str) -> None:
        self._details = details

    def set_trailing_metadata(self, metadata: Iterable[tuple[str, str | bytes]]) -> None:
        self._trailing = tuple(metadata)

    async def abort(
        self,
        code: grpc.StatusCode,
        details: str = "",
        trailing_metadata: Iterable[tuple[str, str | bytes]] = (),
    ) -> None:
        """End the call with `code`, as grpc.aio does: by raising AbortError."""
        self._code, self._details = code, details
        self._trailing = tuple(trailing_metadata) or self._trailing
        raise grpc.aio.AbortError()

    def error(self) -> grpc.aio.AioRpcError:
        """What the caller receives for an aborted call."""
        return _error(self._code, self._details, self._trailing)


def _error(
    code: grpc.StatusCode, details: str, trailing: Sequence[tuple[str, str | bytes]] = ()
) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(
        code, grpc.aio.Metadata(), grpc.aio.Metadata(*trailing), details, None
    )


def _status(exc: Exception, context: LocalContext) -> grpc.aio.AioRpcError:
    """The status a network call would end with when its handler ended with `exc`."""
    if isinstance(exc, TimeoutError):
        return _error(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
    if isinstance(exc, grpc.aio.AbortError):
        return context.error()
    if isinstance(exc, grpc.aio.AioRpcError):
        return exc
    return _error(grpc.StatusCode.UNKNOWN, f"Unexpected {exc!r}")  # what grpc.aio answers


class _Recorder:
    """Stands in for the server in `add_<Service>Servicer_to_server`, keeping the handlers."""

    def __init__(self) -> None:
        self.handlers: list[grpc.GenericRpcHandler[Any, Any]] = []

    def add_generic_rpc_handlers(
        self, handlers: Iterable[grpc.GenericRpcHandler[Any, Any]]
    ) -> None:
        self.handlers.extend(handlers)

    def add_registered_method_handlers(self, name: str, handlers: Mapping[str, Handler]) -> None:
        """The same handlers as the generic ones, registered by name for the C core."""


class LocalChannel(grpc.aio.Channel):
    """Calls the services registered on `server`, through its interceptors, in this process."""

    def __init__(self, server: PantreeServer, client: ClientConfig, max_message_bytes: int) -> None:
        recorder = _Recorder()
        for service in server.services:
            service.add_to_server(service.servicer, cast(grpc.aio.Server, recorder))
        handlers = recorder.handlers

        async def lookup(details: grpc.HandlerCallDetails) -> Handler:
            for generic in handlers:
                found = generic.service(details)
                if found is not None:
                    return found
            return None

        resolve: Lookup = lookup
        for interceptor in reversed(server.interceptors):
            resolve = functools.partial(interceptor.intercept_service, resolve)
        self._resolve = resolve
        self._default_timeout = client.default_timeout_s
        self._authorization = client.authorization()
        self._max_bytes = max_message_bytes
        self._tasks: set[asyncio.Task[Any]] = set()

    def _check_size(self, data: bytes, direction: str) -> bytes:
        if len(data) > self._max_bytes:
            raise _error(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"{direction} message larger than max ({len(data)} vs. {self._max_bytes})",
            )
        return data

    def _start(
        self, method: str, request: bytes, timeout: float | None, metadata: Any
    ) -> tuple[float, LocalContext, _CallDetails]:
        """The call's timeout and metadata as the channel factory sets them, its context and
        what the server's interceptors see of it."""
        timeout_s = call_timeout(timeout, self._default_timeout)
        sent = tuple(outbound_metadata(metadata, self._authorization))
        self._check_size(request, "Sent")
        return timeout_s, LocalContext(sent, timeout_s), _CallDetails(method, sent)

    async def _handler(self, details: Any, kind: str) -> Any:
        """The server's handler of the call, or UNIMPLEMENTED as a network server answers."""
        handler = await self._resolve(details)
        if handler is None or getattr(handler, kind) is None:
            raise _error(grpc.StatusCode.UNIMPLEMENTED, f"Method not found: {details.method}")
        return handler

    def _track(self, task: asyncio.Task[Any]) -> asyncio.Task[Any]:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def unary_unary(
        self,
        method: str,
        request_serializer: Callable[[Any], bytes] | None = None,
        response_deserializer: Callable[[bytes], Any] | None = None,
        _registered_method: bool | None = False,
    ) -> Any:
        serialize = request_serializer or _identity
        deserialize = response_deserializer or _identity

        def call(request: Any, *, timeout: float | None = None, **options: Any) -> Any:
            """What the stub calls: an awaitable of the response, like grpc.aio's call."""
            payload = serialize(request)
            return self._unary(method, payload, deserialize, timeout, options.get("metadata"))

        return call

    async def _unary(
        self,
        method: str,
        payload: bytes,
        deserialize: Callable[[bytes], Any],
        requested_timeout: float | None,
        metadata: Any,
    ) -> Any:
        timeout_s, context, details = self._start(method, payload, requested_timeout, metadata)

        async def serve() -> bytes:
            handler = await self._handler(details, "unary_unary")
            parse = handler.request_deserializer or _identity
            response = await handler.unary_unary(parse(payload), context)
            serialize_response = handler.response_serializer or _identity
            return self._check_size(serialize_response(response), "Response")

        # A task of its own: the step's request id and deadline (context variables) stay out
        # of the caller's, and the deadline cancels the step's work.
        task = self._track(asyncio.create_task(serve()))
        try:
            async with asyncio.timeout(timeout_s):
                data = await task
        except Exception as exc:
            raise _status(exc, context) from None
        return deserialize(data)

    def unary_stream(
        self,
        method: str,
        request_serializer: Callable[[Any], bytes] | None = None,
        response_deserializer: Callable[[bytes], Any] | None = None,
        _registered_method: bool | None = False,
    ) -> Any:
        serialize = request_serializer or _identity
        deserialize = response_deserializer or _identity

        def call(request: Any, *, timeout: float | None = None, **options: Any) -> Any:
            payload = serialize(request)
            timeout_s, context, details = self._start(
                method, payload, timeout, options.get("metadata")
            )
            queue: asyncio.Queue[Any] = asyncio.Queue()

            async def produce() -> None:
                """Run the handler in a task of its own (see unary_unary), queueing each
                message and then the end or the error."""
                try:
                    handler = await self._handler(details, "unary_stream")
                    serialize_response = handler.response_serializer or _identity
                    parse = handler.request_deserializer or _identity
                    async with asyncio.timeout(timeout_s):
                        async for message in handler.unary_stream(parse(payload), context):
                            data = serialize_response(message)
                            queue.put_nowait(self._check_size(data, "Response"))
                    queue.put_nowait(_END)
                except Exception as exc:
                    queue.put_nowait(_status(exc, context))

            async def messages() -> AsyncIterator[Any]:
                task = self._track(asyncio.create_task(produce()))
                try:
                    while (item := await queue.get()) is not _END:
                        if isinstance(item, grpc.aio.AioRpcError):
                            raise item
                        yield deserialize(item)
                finally:
                    task.cancel()  # the reader stopped early: so does the handler

            return messages()

        return call

    def stream_unary(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("in-process calls serve unary requests only")

    def stream_stream(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("in-process calls serve unary requests only")

    async def close(self, grace: float | None = None) -> None:
        """Cancel the calls still running."""
        for task in list(self._tasks):
            task.cancel()

    def get_state(self, try_to_connect: bool = False) -> grpc.ChannelConnectivity:
        return grpc.ChannelConnectivity.READY

    async def wait_for_state_change(self, last_observed_state: grpc.ChannelConnectivity) -> None:
        """The state never changes: waits until cancelled."""
        await asyncio.get_running_loop().create_future()

    async def channel_ready(self) -> None:
        """Always ready."""

    async def __aenter__(self) -> LocalChannel:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        await self.close()


def _identity(value: Any) -> Any:
    return value
