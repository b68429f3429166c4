"""Spreading calls over replicas: the client's load-balancing policy and the server's maximum
connection age (what a headless Kubernetes Service needs, see docs/DEPLOY.md)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import pytest

from pantree_common import config as config_loader
from pantree_common.client import ClientConfig, channel_service_config, create_channel
from pantree_common.errors import ConfigError
from pantree_common.server import PantreeServer, ServerConfig, Service, create_server

METHOD = "/pantree.test.v1.WhoService/Who"
MAX_BYTES = 1024 * 1024


def _raw(message: bytes) -> bytes:
    return message


def _who(name: str) -> Service:
    """A service answering with the server's name and the caller's address."""

    async def who(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        return f"{name} {context.peer()}".encode()

    handler = grpc.method_handlers_generic_handler(
        "pantree.test.v1.WhoService", {"Who": grpc.unary_unary_rpc_method_handler(who)}
    )

    def add(servicer: object, server: grpc.aio.Server) -> None:
        server.add_generic_rpc_handlers((handler,))

    return Service("pantree.test.v1.WhoService", None, add)


async def _server(name: str, **settings: Any) -> PantreeServer:
    config = ServerConfig(host="127.0.0.1", port=0, metrics_port=0, **settings)
    server = create_server(config, lambda _address: [_who(name)])
    await server.start()
    return server


@pytest.fixture
async def two_servers() -> AsyncIterator[str]:
    first, second = await _server("first"), await _server("second")
    try:
        yield f"ipv4:127.0.0.1:{first.port},127.0.0.1:{second.port}"
    finally:
        await first.stop(0)
        await second.stop(0)


async def _answers(target: str, config: ClientConfig, calls: int) -> list[str]:
    async with create_channel(target, config, MAX_BYTES) as channel:
        call: Callable[..., Any] = channel.unary_unary(METHOD, _raw, _raw)
        return [(await call(b"", timeout=5)).decode() for _ in range(calls)]


async def test_round_robin_spreads_calls_over_every_resolved_address(two_servers: str) -> None:
    answers = await _answers(two_servers, ClientConfig(lb_policy="round_robin"), 6)
    assert {answer.split()[0] for answer in answers} == {"first", "second"}


async def test_pick_first_keeps_one_connection(two_servers: str) -> None:
    answers = await _answers(two_servers, ClientConfig(lb_policy="pick_first"), 6)
    assert len({answer.split()[0] for answer in answers}) == 1


async def test_max_connection_age_makes_the_client_reconnect() -> None:
    server = await _server("only", max_connection_age_s=0.2, shutdown_grace_s=1.0)
    try:
        async with create_channel(server.address, ClientConfig(), MAX_BYTES) as channel:
            call: Callable[..., Any] = channel.unary_unary(METHOD, _raw, _raw)
            before = (await call(b"", timeout=5)).decode().split()[1]
            await asyncio.sleep(0.8)
            after = (await call(b"", timeout=5)).decode().split()[1]
        assert before != after, "the client should have opened a new connection"
    finally:
        await server.stop(0)


def test_the_channel_service_config_names_the_policy() -> None:
    config = channel_service_config([], ClientConfig(lb_policy="round_robin"))
    assert config["loadBalancingConfig"] == [{"round_robin": {}}]


def test_an_unknown_policy_is_refused() -> None:
    with pytest.raises(ConfigError, match="PANTREE_GRPC_LB_POLICY"):
        config_loader.load(ClientConfig, {"PANTREE_GRPC_LB_POLICY": "least_request"})
