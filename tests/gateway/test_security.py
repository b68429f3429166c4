"""The gateway with authentication on, in front of a mesh with authentication and TLS on: the
same tokens and scopes as gRPC, on REST and the WebSocket, and a rate limit per client."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import suppress
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from gateway import server as gateway_server
from gateway.app import HISTORY_EXAMPLE, SEED_EXAMPLE
from gateway.config import GatewayConfig
from pantree_common.auth import AuthConfig, new_token
from pantree_common.client import ClientConfig
from pantree_common.logging import JsonFormatter
from tests.pki import SERVER_NAME, make_pki
from tests.service.conftest import Mesh, start_mesh, stop_mesh

# HTTP callers of the gateway, the gateway itself, and the orchestrator (for its steps).
SCOPES = {
    "backend": "recommend",
    "app": "process_seed",
    "operator": "admin",
    "gateway": "recommend,process_seed,admin",
    "orchestrator": "internal",
}
ROUTES = {  # route -> (method, body, a caller allowed, a caller refused)
    "/api/v1/recommend": ("POST", HISTORY_EXAMPLE, "backend", "app"),
    "/api/v1/process": ("POST", SEED_EXAMPLE | {"months": 1}, "app", "backend"),
    "/api/v1/archetypes": ("GET", None, "app", "operator"),
    "/api/v1/config": ("GET", None, "operator", "backend"),
}


@dataclass
class Secured:
    mesh: Mesh
    tokens: dict[str, str]
    lines: list[str]
    client: ClientConfig

    async def gateway(self, **settings: object) -> gateway_server.RunningGateway:
        config = GatewayConfig(
            host="127.0.0.1",
            port=0,
            orchestrator_addr=self.mesh.server.address,
            auth=AuthConfig(tokens=";".join(self.lines)),
            **settings,  # type: ignore[arg-type]
        )
        return await gateway_server.start(
            gateway_server.create_server(config, self.client, 4 << 20)
        )


@pytest.fixture
async def secured(tmp_path: Path) -> AsyncIterator[Secured]:
    pki = make_pki(tmp_path)
    tokens, lines = {}, []
    for name, scopes in SCOPES.items():
        tokens[name], line = new_token(scopes, name)
        lines.append(line)
    mesh = await start_mesh(
        tmp_path,
        PANTREE_TLS_CERT_FILE=str(pki.server_cert),
        PANTREE_TLS_KEY_FILE=str(pki.server_key),
        PANTREE_AUTH_TOKENS=";".join(lines),
        PANTREE_TLS_CA_FILE=str(pki.ca),
        PANTREE_AUTH_CLIENT_TOKEN=tokens["orchestrator"],
    )
    client = ClientConfig(
        tls_ca_file=str(pki.ca), tls_server_name=SERVER_NAME, auth_token=tokens["gateway"]
    )
    yield Secured(mesh, tokens, lines, client)
    await stop_mesh(mesh)


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_routes_need_the_scope_of_the_rpc_they_call(
    secured: Secured, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    web = await secured.gateway()
    tokens = secured.tokens
    stranger, _ = new_token("admin", "stranger")
    texts = []
    try:
        async with httpx.AsyncClient(base_url=web.url, timeout=30) as http:
            for path in ("/", "/health", "/openapi.json", "/static/app.js"):
                assert (await http.get(path)).status_code == 200, path
            for path, (verb, body, allowed, refused) in ROUTES.items():
                cases = [
                    ({}, 401),
                    ({"Authorization": f"Basic {tokens[allowed]}"}, 401),
                    (_bearer(stranger), 401),
                    (_bearer(tokens[refused]), 403),
                    (_bearer(tokens[allowed]), 200),
                ]
                for headers, expected in cases:
                    response = await http.request(verb, path, json=body, headers=headers)
                    texts.append(response.text)
                    assert response.status_code == expected, (path, expected, response.text)
                    if expected == 401:
                        assert response.headers["www-authenticate"].startswith("Bearer")
                        assert response.json()["error"]["status"] == "UNAUTHENTICATED"
    finally:
        await web.stop()
    logged = [JsonFormatter().format(record) for record in caplog.records]
    for secret in [*tokens.values(), stranger, *(line.split()[0] for line in secured.lines)]:
        assert not [text for text in texts if secret in text]
        assert not [line for line in logged if secret in line]


async def _socket(url: str) -> tuple[list[dict[str, Any]], int | None]:
    """Messages received after sending one seed, and the close code."""
    messages = []
    try:
        async with connect(url) as socket:
            with suppress(ConnectionClosed):  # a refused socket may be closed already
                await socket.send(json.dumps(SEED_EXAMPLE | {"months": 1}))
            while True:
                messages.append(json.loads(await socket.recv()))
    except ConnectionClosed as closed:
        return messages, closed.rcvd.code if closed.rcvd else None


async def test_the_websocket_takes_the_token_as_a_query_parameter(secured: Secured) -> None:
    web = await secured.gateway()
    base = web.url.replace("http://", "ws://") + "ws/stream/shopper-1"
    try:
        messages, code = await _socket(base)
        assert (code, messages[-1]["error"]["status"]) == (4401, "UNAUTHENTICATED")
        messages, code = await _socket(f"{base}?access_token={secured.tokens['backend']}")
        assert (code, messages[-1]["error"]["status"]) == (4403, "PERMISSION_DENIED")
        messages, code = await _socket(f"{base}?access_token={secured.tokens['app']}")
        assert code == 1000
        assert "summary" in messages[-1]
    finally:
        await web.stop()


async def test_each_client_has_its_own_bucket_and_is_told_when_to_retry(
    secured: Secured,
) -> None:
    web = await secured.gateway(rate_limit_per_s=0.5, rate_limit_burst=2)
    try:
        async with httpx.AsyncClient(base_url=web.url, timeout=30) as http:
            app = _bearer(secured.tokens["app"])
            codes = [(await http.get("/api/v1/archetypes", headers=app)).status_code]
            codes += [(await http.get("/api/v1/archetypes", headers=app)).status_code]
            limited = await http.get("/api/v1/archetypes", headers=app)
            assert codes == [200, 200]
            assert limited.status_code == 429
            assert limited.json()["error"]["status"] == "RESOURCE_EXHAUSTED"
            assert int(limited.headers["retry-after"]) >= 1
            backend = _bearer(secured.tokens["backend"])
            assert (await http.get("/api/v1/archetypes", headers=backend)).status_code == 200
            # Without a valid token the client is its address, and guessing is limited too.
            guesses = [(await http.get("/api/v1/archetypes")).status_code for _ in range(3)]
            assert guesses == [401, 401, 429]
    finally:
        await web.stop()


async def test_the_orchestrator_refusing_the_gateway_is_a_500_not_the_callers_401(
    secured: Secured,
) -> None:
    # The gateway's own token lacks admin, which GetConfig needs.
    secured.client = replace(secured.client, auth_token=secured.tokens["app"])
    web = await secured.gateway()
    try:
        async with httpx.AsyncClient(base_url=web.url, timeout=30) as http:
            response = await http.get("/api/v1/config", headers=_bearer(secured.tokens["operator"]))
        assert response.status_code == 500
        assert response.json()["error"]["status"] == "INTERNAL"
    finally:
        await web.stop()
