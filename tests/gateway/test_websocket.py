"""The WebSocket contract: one seed in, each ProcessSeed event out as it comes, then a close."""

from __future__ import annotations

import json
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from gateway.app import SEED_EXAMPLE
from tests.gateway.conftest import Gateway


def stream_url(gateway: Gateway, customer_id: str) -> str:
    return gateway.url.replace("http://", "ws://") + f"/ws/stream/{customer_id}"


def receive_all(socket: ClientConnection) -> list[dict[str, Any]]:
    messages = []
    with pytest.raises(ConnectionClosed):
        while True:
            messages.append(json.loads(socket.recv(timeout=30)))
    return messages


def test_every_event_arrives_in_order_then_a_normal_close(gateway: Gateway) -> None:
    with connect(stream_url(gateway, "ws-shopper")) as socket:
        socket.send(json.dumps(SEED_EXAMPLE))
        events = receive_all(socket)
        assert socket.close_code == 1000
    kinds = [next(iter(event)) for event in events]
    assert kinds[0] == "resolution"
    assert kinds.count("month") == 6
    assert [k for k in kinds if k != "progress"] == [
        "resolution",
        *["month"] * 6,
        "analysis",
        "recommendations",
        "summary",
    ]
    assert events[-1]["summary"]["customerId"] == "ws-shopper"  # from the path


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (json.dumps({"archetype": "nope", "seedItems": [{"name": "milk"}]}), "archetype"),
        ("not json", "body"),
    ],
)
def test_a_refused_seed_gets_the_error_body_and_close_code_4400(
    gateway: Gateway, body: str, field: str
) -> None:
    with connect(stream_url(gateway, "ws-shopper")) as socket:
        socket.send(body)
        (message,) = receive_all(socket)
        assert socket.close_code == 4400
    assert message["error"]["status"] == "INVALID_ARGUMENT"
    assert message["error"]["fieldViolations"][0]["field"] == field
