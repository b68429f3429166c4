"""REST contracts of the gateway process in front of a real mesh process."""

from __future__ import annotations

import time
import uuid

import httpx
from google.protobuf import json_format

from gateway.app import SEED_EXAMPLE
from tests.gateway.conftest import CORS_ORIGIN, Gateway
from tests.histories import rhythmic_history


def test_root_is_the_page_for_browsers_and_a_status_for_the_rest(client: httpx.Client) -> None:
    status = client.get("/", headers={"Accept": "application/json"})
    assert status.json()["service"] == "pantree-gateway"
    page = client.get("/", headers={"Accept": "text/html,application/xhtml+xml"})
    assert page.headers["content-type"].startswith("text/html")
    assert 'src="/static/app.js"' in page.text
    script = client.get("/static/app.js")
    assert script.status_code == 200
    assert "javascript" in script.headers["content-type"]


def test_health_reflects_the_orchestrator(client: httpx.Client, gateway: Gateway) -> None:
    assert client.get("/health").json() == {
        "status": "SERVING",
        "orchestrator": gateway.mesh.address,
    }


def test_archetypes_and_config(client: httpx.Client) -> None:
    archetypes = client.get("/api/v1/archetypes").json()["archetypes"]
    assert "busy_family" in {a["archetypeId"] for a in archetypes}
    config = client.get("/api/v1/config").json()
    values = {e["envVar"]: e["value"] for e in config["entries"]}
    assert values["PANTREE_GATEWAY_MAX_BODY_BYTES"] == "65536"  # the gateway's own
    assert values["PANTREE_CATALOG"] == "builtin"  # the orchestrator's
    assert list(values) == sorted(values)
    assert config["version"]


def test_process_answers_with_the_whole_result(client: httpx.Client) -> None:
    response = client.post("/api/v1/process", json=SEED_EXAMPLE)
    assert response.status_code == 200, response.text
    result = response.json()
    assert set(result) == {"resolution", "months", "analysis", "recommendations", "summary"}
    assert [m["monthIndex"] for m in result["months"]] == [1, 2, 3, 4, 5, 6]
    assert result["summary"]["monthCount"] == 6
    assert result["recommendations"]["offers"][0]["deliveryIntervalDays"] > 0


def test_recommend_takes_a_history_in_proto_json(client: httpx.Client) -> None:
    body = {"history": json_format.MessageToDict(rhythmic_history()), "maxOffers": 3}
    response = client.post("/api/v1/recommend", json=body)
    assert response.status_code == 200, response.text
    offers = response.json()["offers"]
    assert 1 <= len(offers) <= 3
    assert offers[0]["product"]["name"]


def test_bad_fields_are_400_with_every_violation(client: httpx.Client) -> None:
    response = client.post("/api/v1/process", json={"archetype": "nope", "seedItems": []})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT"
    assert {v["field"] for v in error["fieldViolations"]} == {"archetype", "seed_items"}


def test_bodies_that_are_not_the_message_are_400(client: httpx.Client) -> None:
    for body in (b"not json", b"[]", b'{"noSuchField": 1}', b'{"months": 1.5}', b"\xff"):
        response = client.post("/api/v1/process", content=body)
        assert response.status_code == 400, body
        assert response.json()["error"]["fieldViolations"][0]["field"] == "body"


def test_request_id_is_echoed_and_forwarded_to_the_mesh(
    client: httpx.Client, gateway: Gateway
) -> None:
    request_id = f"gw-{uuid.uuid4().hex}"
    response = client.post(
        "/api/v1/recommend", json={"history": {}}, headers={"X-Request-Id": request_id}
    )
    assert response.status_code == 400
    assert response.headers["x-request-id"] == request_id
    assert response.json()["error"]["requestId"] == request_id
    deadline = time.monotonic() + 5
    while request_id not in gateway.mesh.log_path.read_text():  # the mesh's "rpc failed" line
        assert time.monotonic() < deadline, "the request id never reached the mesh"
        time.sleep(0.05)
    generated = client.get("/health", headers={"X-Request-Id": "bad id\twith spaces"})
    assert len(generated.headers["x-request-id"]) == 16


def test_bodies_over_the_limit_are_413(client: httpx.Client) -> None:
    big = b'{"customerId": "' + b"x" * 70_000 + b'"}'

    def chunks() -> object:
        yield big[:40_000]
        yield big[40_000:]

    for content in (big, chunks()):  # declared length, then chunked without one
        response = client.post("/api/v1/process", content=content)  # type: ignore[arg-type]
        assert response.status_code == 413
        assert response.json()["error"]["status"] == "RESOURCE_EXHAUSTED"


def test_unknown_routes_and_methods_get_the_error_body(client: httpx.Client) -> None:
    missing = client.get("/api/v1/nothing")
    assert missing.status_code == 404
    assert missing.json()["error"]["status"] == "NOT_FOUND"
    assert client.get("/api/v1/process").status_code == 405


def test_cors_admits_only_the_configured_origins(client: httpx.Client) -> None:
    def preflight(origin: str) -> httpx.Response:
        return client.options(
            "/api/v1/recommend",
            headers={"Origin": origin, "Access-Control-Request-Method": "POST"},
        )

    allowed = preflight(CORS_ORIGIN)
    assert allowed.headers["access-control-allow-origin"] == CORS_ORIGIN
    assert "access-control-allow-credentials" not in allowed.headers
    assert "access-control-allow-origin" not in preflight("http://evil.example").headers


def test_openapi_documents_every_route_with_proto_schemas(client: httpx.Client) -> None:
    document = client.get("/openapi.json").json()
    assert set(document["paths"]) == {
        "/",
        "/health",
        "/api/v1/process",
        "/api/v1/recommend",
        "/api/v1/archetypes",
        "/api/v1/config",
    }
    schemas = document["components"]["schemas"]
    seed = schemas["pantree.orchestrator.v1.ProcessSeedRequest"]["properties"]
    assert seed["seedItems"]["items"] == {"$ref": "#/components/schemas/pantree.domain.v1.SeedItem"}
    assert seed["randomSeed"]["type"] == ["integer", "string"]
