"""The in-process channel behaves as a network channel to the same server does: request ids and
deadlines reach the handler, errors keep their code and details, deadlines cancel the handler,
streams arrive in order; only the transport is skipped (pantree_common/local.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import pytest

from pantree_common import context
from pantree_common.client import ClientConfig, create_channel
from pantree_common.errors import FieldViolation, InvalidArgument, bad_request_violations
from pantree_common.local import LocalChannel
from pantree_common.server import PantreeServer, ServerConfig, Service, create_server

SERVICE = "pantree.test.v1.LocalService"
MAX_BYTES = 64 * 1024
Context = grpc.aio.ServicerContext[Any, Any]


class Handlers:
    """A step whose methods report what they saw, fail, or hang until cancelled."""

    def __init__(self) -> None:
        self.cancelled = asyncio.Event()

    async def echo(self, request: bytes, context_: Context) -> bytes:
        remaining = context_.time_remaining()
        return f"{context.request_id.get()}|{remaining:.1f}|{request.decode()}".encode()

    async def fail(self, request: bytes, context_: Context) -> bytes:
        raise InvalidArgument.single("history.customer_id", "is required")

    async def slow(self, request: bytes, context_: Context) -> bytes:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        return b""

    async def count(self, request: bytes, context_: Context) -> AsyncIterator[bytes]:
        for n in range(int(request)):
            yield str(n).encode()

    async def stall(self, request: bytes, context_: Context) -> AsyncIterator[bytes]:
        yield b"first"
        try:
            await asyncio.sleep(10)
        finally:
            self.cancelled.set()
        yield b"never"

    def service(self) -> Service:
        unary = grpc.unary_unary_rpc_method_handler
        stream = grpc.unary_stream_rpc_method_handler
        methods = {
            "Echo": unary(self.echo),
            "Fail": unary(self.fail),
            "Slow": unary(self.slow),
            "Count": stream(self.count),
            "Stall": stream(self.stall),
        }
        generic = grpc.method_handlers_generic_handler(SERVICE, methods)

        def add(servicer: object, server: grpc.aio.Server) -> None:
            server.add_generic_rpc_handlers((generic,))

        return Service(SERVICE, self, add)


Served = tuple[Handlers, grpc.aio.Channel]


@pytest.fixture(params=["in-process", "network"])
async def served(request: pytest.FixtureRequest) -> AsyncIterator[Served]:
    handlers = Handlers()
    config = ServerConfig(host="127.0.0.1", port=0, metrics_port=0, max_message_bytes=MAX_BYTES)
    server: PantreeServer = create_server(config, lambda _address: [handlers.service()])
    await server.start()
    open_channel: Callable[[], grpc.aio.Channel] = (
        (lambda: LocalChannel(server, ClientConfig(), MAX_BYTES))
        if request.param == "in-process"
        else (lambda: create_channel(server.address, ClientConfig(), MAX_BYTES))
    )
    channel = open_channel()
    try:
        yield handlers, channel
    finally:
        await channel.close(None)
        await server.stop(0)


async def test_request_id_and_deadline_reach_the_step(served: Served) -> None:
    _, channel = served
    context.request_id.set("rid-42")
    deadline = time.monotonic() + 3
    context.deadline.set(deadline)
    answer = await channel.unary_unary(f"/{SERVICE}/Echo")(b"hello")
    request_id, remaining, echoed = answer.decode().split("|")
    assert (request_id, echoed) == ("rid-42", "hello")
    assert 2.0 < float(remaining) <= 3.0
    assert context.deadline.get() == deadline  # the step's own deadline stayed in the step


async def test_errors_keep_their_code_and_field_violations(served: Served) -> None:
    _, channel = served
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await channel.unary_unary(f"/{SERVICE}/Fail")(b"", timeout=5)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request_violations(caught.value) == [
        FieldViolation("history.customer_id", "is required")
    ]


async def test_a_deadline_ends_the_call_and_cancels_the_step(served: Served) -> None:
    handlers, channel = served
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await channel.unary_unary(f"/{SERVICE}/Slow")(b"", timeout=0.2)
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    await asyncio.wait_for(handlers.cancelled.wait(), 5)


async def test_streams_arrive_in_order_and_stop_with_their_reader(served: Served) -> None:
    handlers, channel = served
    counted = [m async for m in channel.unary_stream(f"/{SERVICE}/Count")(b"4", timeout=5)]
    assert counted == [b"0", b"1", b"2", b"3"]
    stream = channel.unary_stream(f"/{SERVICE}/Stall")(b"", timeout=0.3)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for message in stream:
            assert message == b"first"
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    await asyncio.wait_for(handlers.cancelled.wait(), 5)


async def test_unknown_methods_and_oversized_messages_are_refused(served: Served) -> None:
    _, channel = served
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await channel.unary_unary(f"/{SERVICE}/Missing")(b"", timeout=5)
    assert unknown.value.code() == grpc.StatusCode.UNIMPLEMENTED
    with pytest.raises(grpc.aio.AioRpcError) as large:
        await channel.unary_unary(f"/{SERVICE}/Echo")(b"x" * (MAX_BYTES + 1), timeout=5)
    assert large.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
