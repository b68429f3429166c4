"""The gateway's routes: REST and a WebSocket over the orchestrator's gRPC API, and the page.

Bodies are the protos' canonical JSON (google.protobuf.json_format) both ways, so the REST
contract is the gRPC contract; the OpenAPI schemas are derived from the same descriptors.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar, cast

import grpc
from fastapi import Depends, FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pantree.domain.v1 import analysis_pb2, history_pb2
from pantree.orchestrator.v1 import orchestrator_service_pb2 as pb
from pantree.orchestrator.v1.orchestrator_service_pb2_grpc import OrchestratorServiceStub
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import HTTPConnection

import pantree_common
from gateway import errors
from gateway.config import GatewayConfig
from gateway.middleware import REQUEST_ID_HEADER, RequestContext
from gateway.schemas import message_schemas, ref
from gateway.security import ClientRateLimit, Guard
from pantree_common import config as config_loader
from pantree_common.auth import TokenStore
from pantree_common.client import ClientConfig, create_channel
from pantree_common.descriptors import SERVICES
from pantree_common.errors import InvalidArgument, PantreeError, Unavailable

if TYPE_CHECKING:
    from pantree.orchestrator.v1.orchestrator_service_pb2_grpc import (
        OrchestratorServiceAsyncStub,
    )

STATIC = Path(__file__).parent / "static"
ORCHESTRATOR = SERVICES["orchestrator"]
# /health answers load balancers, which want a quick no rather than the full call deadline.
HEALTH_TIMEOUT_S = 2.0
# WebSocket close codes after an error: 4000 + the HTTP status of the error message sent first.
WS_ERROR_CLOSE_BASE = 4000
# The orchestrator RPC each guarded route calls: the route needs that RPC's scope.
RECOMMEND = f"/{ORCHESTRATOR.full_name}/Recommend"
PROCESS_SEED = f"/{ORCHESTRATOR.full_name}/ProcessSeed"
LIST_ARCHETYPES = f"/{ORCHESTRATOR.full_name}/ListArchetypes"
GET_CONFIG = f"/{ORCHESTRATOR.full_name}/GetConfig"

M = TypeVar("M", bound=Message)


@dataclass(frozen=True)
class Upstream:
    """The orchestrator as the gateway calls it, over one channel from the one channel factory."""

    orchestrator: OrchestratorServiceAsyncStub
    health: health_pb2_grpc.HealthStub


def _upstream(connection: HTTPConnection) -> Upstream:
    return cast(Upstream, connection.app.state.upstream)


Orchestrator = Annotated[Upstream, Depends(_upstream)]


def to_dict(message: Message) -> dict[str, Any]:
    """A message as the JSON the REST and WebSocket clients get (every field present)."""
    return json_format.MessageToDict(message, always_print_fields_with_no_presence=True)


def parse(body: bytes | str, message: M) -> M:
    """`message` filled from a JSON object; anything else is the caller's INVALID_ARGUMENT."""
    try:
        text = body.decode("utf-8") if isinstance(body, bytes) else body
        if not text.lstrip().startswith("{"):
            raise json_format.ParseError("expected a JSON object")
        json_format.Parse(text, message)
    except (UnicodeDecodeError, json_format.ParseError) as exc:
        raise InvalidArgument.single(
            "body", f"not a {message.DESCRIPTOR.full_name} in JSON: {exc}"
        ) from None
    return message


def _json(message: Message) -> JSONResponse:
    return JSONResponse(to_dict(message))


def _component(name: str) -> dict[str, str]:
    """A reference to one of the gateway's own schemas (_SCHEMAS)."""
    return {"$ref": f"#/components/schemas/{name}"}


def _ok(schema: dict[str, Any]) -> dict[int | str, Any]:
    """OpenAPI responses: `schema` on 200, the one error body on every 4XX and 5XX."""
    error = {
        "description": "Error",
        "content": {"application/json": {"schema": _component("Error")}},
    }
    return {
        200: {"description": "OK", "content": {"application/json": {"schema": schema}}},
        "4XX": error,
        "5XX": error,
    }


def _body(descriptor: Descriptor, example: dict[str, Any]) -> dict[str, Any]:
    """OpenAPI requestBody for a JSON-encoded message."""
    media = {"schema": ref(descriptor), "example": example}
    return {"requestBody": {"required": True, "content": {"application/json": media}}}


# The README's examples, so the document shows (and API fuzzers replay) requests that succeed.
SEED_EXAMPLE = {
    "archetype": "busy_family",
    "seedItems": [{"name": "milk"}, {"name": "eggs"}],
    "months": 6,
    "randomSeed": "7",
}
HISTORY_EXAMPLE = {
    "history": {
        "products": [{"productId": "p-1001", "name": "Whole Milk 1 Gallon", "unitPriceUsd": 3.89}],
        "productIndexes": [0, 0, 0, 0],
        "purchaseEpochDays": [20400, 20407, 20414, 20421],
    },
    "asOfEpochDay": 20423,
}


# The component schemas: every message the routes take or give, and the gateway's own bodies.
_SCHEMAS: dict[str, dict[str, Any]] = message_schemas(
    pb.ProcessSeedRequest.DESCRIPTOR,
    pb.ProcessSeedResponse.DESCRIPTOR,
    pb.RecommendRequest.DESCRIPTOR,
    pb.RecommendResponse.DESCRIPTOR,
    pb.ListArchetypesResponse.DESCRIPTOR,
    pb.GetConfigResponse.DESCRIPTOR,
) | {
    "Error": errors.ERROR_SCHEMA,
    "Status": {
        "type": "object",
        "required": ["service", "version", "orchestrator"],
        "properties": {
            "service": {"type": "string"},
            "version": {"type": "string"},
            "orchestrator": {"type": "string", "description": "host:port the gateway calls."},
        },
    },
    "Health": {
        "type": "object",
        "required": ["status", "orchestrator"],
        "properties": {
            "status": {"type": "string", "enum": ["SERVING"]},
            "orchestrator": {"type": "string"},
        },
    },
    "ProcessResult": {
        "type": "object",
        "description": "Every ProcessSeed event but progress: the months in order, the rest once.",
        "required": ["months"],
        "properties": {
            "resolution": ref(pb.SeedResolution.DESCRIPTOR),
            "months": {"type": "array", "items": ref(history_pb2.SimulatedMonth.DESCRIPTOR)},
            "analysis": ref(analysis_pb2.HistoryAnalysis.DESCRIPTOR),
            "recommendations": ref(pb.Recommendations.DESCRIPTOR),
            "summary": ref(pb.Summary.DESCRIPTOR),
        },
    },
}


def create_app(config: GatewayConfig, client: ClientConfig, max_message_bytes: int) -> FastAPI:
    """The gateway application; its orchestrator channel opens when the server starts."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        channel = create_channel(
            config.orchestrator_addr, client, max_message_bytes, [ORCHESTRATOR]
        )
        app.state.upstream = Upstream(
            OrchestratorServiceStub(channel), health_pb2_grpc.HealthStub(channel)
        )
        async with channel:
            yield

    app = FastAPI(
        title="Pantree gateway",
        version=pantree_common.__version__,
        description="REST and WebSocket access to the Pantree orchestrator, for browsers. "
        "Bodies are the canonical JSON mapping of the pantree.* protos.",
        lifespan=lifespan,
        docs_url=None,  # Swagger UI loads from a CDN; the gateway works offline
        redoc_url=None,
    )
    errors.install(app)
    limit = None
    if config.rate_limit_per_s > 0:
        limit = ClientRateLimit(config.rate_limit_per_s, config.rate_limit_burst)
    guard = Guard(TokenStore(config.auth), limit)

    def guarded(method: str) -> list[Any]:
        """The dependency that admits a request to a route calling `method`."""

        def check(request: Request) -> None:
            guard.check(request, method)

        return [Depends(check)]

    if config.origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=config.origins,
            allow_credentials=config.cors_allow_credentials,
            allow_methods=["GET", "POST"],
            allow_headers=["Content-Type", "Authorization", REQUEST_ID_HEADER],
            expose_headers=[REQUEST_ID_HEADER, "Retry-After"],
        )
    app.add_middleware(RequestContext, max_body_bytes=config.max_body_bytes)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get(
        "/",
        summary="The demo page for browsers (Accept: text/html), else the gateway's status",
        responses={
            200: {
                "description": "OK",
                "content": {
                    "application/json": {"schema": _component("Status")},
                    "text/html": {"schema": {"type": "string"}},
                },
            }
        },
    )
    async def root(request: Request) -> Response:
        if "text/html" in request.headers.get("accept", ""):
            return FileResponse(STATIC / "index.html", media_type="text/html")
        return JSONResponse(
            {
                "service": "pantree-gateway",
                "version": pantree_common.__version__,
                "orchestrator": config.orchestrator_addr,
            }
        )

    @app.get(
        "/health",
        summary="SERVING when the orchestrator's gRPC health check says so, else 503",
        responses=_ok(_component("Health")),
    )
    async def health(upstream: Orchestrator) -> JSONResponse:
        response = await upstream.health.Check(
            health_pb2.HealthCheckRequest(service=ORCHESTRATOR.full_name),
            timeout=HEALTH_TIMEOUT_S,
        )
        status = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
        if response.status != health_pb2.HealthCheckResponse.SERVING:
            raise Unavailable(f"the orchestrator at {config.orchestrator_addr} is {status}")
        return JSONResponse({"status": status, "orchestrator": config.orchestrator_addr})

    @app.post(
        "/api/v1/process",
        summary="Run ProcessSeed and answer with the whole result at once",
        openapi_extra=_body(pb.ProcessSeedRequest.DESCRIPTOR, SEED_EXAMPLE),
        responses=_ok(_component("ProcessResult")),
        dependencies=guarded(PROCESS_SEED),
    )
    async def process(request: Request, upstream: Orchestrator) -> JSONResponse:
        seed = parse(await request.body(), pb.ProcessSeedRequest())
        result: dict[str, Any] = {"months": []}
        async for event in upstream.orchestrator.ProcessSeed(seed):
            kind = event.WhichOneof("event")
            if kind == "month":
                result["months"].append(to_dict(event.month))
            elif kind is not None and kind != "progress":
                result[kind] = to_dict(getattr(event, kind))
        return JSONResponse(result)

    @app.post(
        "/api/v1/recommend",
        summary="Ranked subscription offers for a purchase history (Recommend)",
        openapi_extra=_body(pb.RecommendRequest.DESCRIPTOR, HISTORY_EXAMPLE),
        responses=_ok(ref(pb.RecommendResponse.DESCRIPTOR)),
        dependencies=guarded(RECOMMEND),
    )
    async def recommend(request: Request, upstream: Orchestrator) -> JSONResponse:
        body = parse(await request.body(), pb.RecommendRequest())
        return _json(await upstream.orchestrator.Recommend(body))

    @app.get(
        "/api/v1/archetypes",
        summary="The shopper archetypes ProcessSeed accepts",
        responses=_ok(ref(pb.ListArchetypesResponse.DESCRIPTOR)),
        dependencies=guarded(LIST_ARCHETYPES),
    )
    async def archetypes(upstream: Orchestrator) -> JSONResponse:
        return _json(await upstream.orchestrator.ListArchetypes(pb.ListArchetypesRequest()))

    @app.get(
        "/api/v1/config",
        summary="Non-secret settings of the orchestrator and of this gateway",
        responses=_ok(ref(pb.GetConfigResponse.DESCRIPTOR)),
        dependencies=guarded(GET_CONFIG),
    )
    async def settings(upstream: Orchestrator) -> JSONResponse:
        response = await upstream.orchestrator.GetConfig(pb.GetConfigRequest())
        response.entries.extend(
            pb.ConfigEntry(env_var=s.env_var, value=s.value, description=s.description)
            for s in config_loader.settings(config)
            if not s.secret
        )
        response.entries.sort(key=lambda entry: entry.env_var)
        return _json(response)

    @app.websocket("/ws/stream/{customer_id}")
    async def stream(websocket: WebSocket, customer_id: str, upstream: Orchestrator) -> None:
        """Send one ProcessSeedRequest as JSON; get each ProcessSeed event as one JSON message
        as it is produced, then a normal close. After an error the last message is the error
        body and the close code is 4000 + its HTTP status. Closing the socket cancels the call.
        With authentication on, the token comes as `Authorization: Bearer` or, from browsers,
        which cannot set that header here, as `?access_token=`; refusals close with 4401, 4403
        or 4429 after their error body."""
        await websocket.accept()
        try:
            guard.check(websocket, PROCESS_SEED)
            first = await websocket.receive()
            if first["type"] == "websocket.disconnect":
                return
            seed = parse(first.get("text") or first.get("bytes") or b"", pb.ProcessSeedRequest())
            seed.customer_id = customer_id
            await _forward(websocket, upstream.orchestrator.ProcessSeed(seed))
            await websocket.close()
        except WebSocketDisconnect:
            return
        except (grpc.aio.AioRpcError, PantreeError) as exc:
            status, body = errors.rpc_error_body(exc)
            with suppress(WebSocketDisconnect):
                await websocket.send_text(json.dumps(body))
                await websocket.close(WS_ERROR_CLOSE_BASE + status)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            document.setdefault("components", {}).setdefault("schemas", {}).update(_SCHEMAS)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


async def _forward(
    websocket: WebSocket,
    call: grpc.aio.UnaryStreamCall[pb.ProcessSeedRequest, pb.ProcessSeedResponse],
) -> None:
    """Relay `call`'s events until it ends or the client goes away, which cancels the call."""

    async def relay() -> None:
        async for event in call:
            await websocket.send_text(json.dumps(to_dict(event)))

    async def until_disconnect() -> None:
        # The client speaks once; later messages are ignored until it disconnects.
        while (await websocket.receive())["type"] != "websocket.disconnect":
            pass

    relaying = asyncio.create_task(relay())
    watching = asyncio.create_task(until_disconnect())
    try:
        done, _ = await asyncio.wait({relaying, watching}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        call.cancel()  # a no-op once the stream has ended
        relaying.cancel()
        watching.cancel()
    if relaying not in done:
        raise WebSocketDisconnect()
    relaying.result()  # the end of the stream, or its error
