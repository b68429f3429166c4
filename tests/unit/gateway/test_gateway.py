"""Gateway settings, the one gRPC → HTTP status mapping, and the last-resort 500."""

from __future__ import annotations

from pathlib import Path

import grpc
import httpx
import pytest

from gateway.app import create_app
from gateway.config import GatewayConfig
from gateway.errors import HTTP_STATUS
from pantree_common import config as config_loader
from pantree_common.client import ClientConfig
from pantree_common.errors import ConfigError

ROOT = Path(__file__).resolve().parents[3]


def test_origins_are_read_from_a_comma_separated_list() -> None:
    config = config_loader.load(
        GatewayConfig,
        {"PANTREE_GATEWAY_CORS_ORIGINS": " https://shop.example, http://localhost:3000 ,"},
    )
    assert config.origins == ["https://shop.example", "http://localhost:3000"]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"PANTREE_GATEWAY_CORS_ORIGINS": "*", "PANTREE_GATEWAY_CORS_CREDENTIALS": "true"},
            "explicit origins",
        ),
        ({"PANTREE_GATEWAY_CORS_ORIGINS": "shop.example"}, "scheme://host"),
        ({"PANTREE_GATEWAY_MAX_BODY_BYTES": "10"}, "1024 or more"),
        ({"PANTREE_GATEWAY_PORT": "70000"}, "0-65535"),
    ],
)
def test_settings_the_gateway_cannot_run_with_are_refused(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        config_loader.load(GatewayConfig, env)


def test_every_grpc_status_has_an_http_status() -> None:
    assert set(HTTP_STATUS) == set(grpc.StatusCode)
    assert HTTP_STATUS[grpc.StatusCode.INVALID_ARGUMENT] == 400
    assert HTTP_STATUS[grpc.StatusCode.UNAUTHENTICATED] == 401
    assert HTTP_STATUS[grpc.StatusCode.RESOURCE_EXHAUSTED] == 429
    assert HTTP_STATUS[grpc.StatusCode.UNAVAILABLE] == 503
    assert HTTP_STATUS[grpc.StatusCode.DEADLINE_EXCEEDED] == 504


def test_readme_table_matches_the_declarations() -> None:
    readme = (ROOT / "README.md").read_text()
    marker = "<!-- gateway-settings-table -->\n"
    table = readme.split(marker)[1].split("<!-- /gateway-settings-table -->")[0]
    assert table == config_loader.markdown_table(GatewayConfig()), (
        "paste config_loader.markdown_table(GatewayConfig()) into the README's gateway table"
    )


async def test_an_unforeseen_exception_is_a_json_500_without_its_details() -> None:
    app = create_app(GatewayConfig(), ClientConfig(), 1024 * 1024)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret detail")

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        response = await client.get("/boom", headers={"X-Request-Id": "crash-1"})
    assert response.status_code == 500
    assert response.headers["x-request-id"] == "crash-1"
    error = response.json()["error"]
    assert (error["status"], error["requestId"]) == ("INTERNAL", "crash-1")
    assert "secret" not in response.text
