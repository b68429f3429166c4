"""What every request goes through before a route: its request id, the body limit, the access
log line, and a JSON 500 instead of a traceback for anything unforeseen."""

from __future__ import annotations

import logging
import re
import time

import grpc
from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.errors import INTERNAL_MESSAGE, error_body
from pantree_common import context

log = logging.getLogger("pantree.gateway")

REQUEST_ID_HEADER = "X-Request-Id"
# A caller's id is kept when it can travel as gRPC metadata (printable ASCII) and stays short.
_VALID_REQUEST_ID = re.compile(r"^[!-~]{1,128}$")


class BodyTooLarge(Exception):
    """A request body went past PANTREE_GATEWAY_MAX_BODY_BYTES."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body is larger than {limit} bytes")


def _request_id(headers: Headers) -> str:
    given = headers.get(REQUEST_ID_HEADER, "")
    return given if _VALID_REQUEST_ID.match(given) else context.new_request_id()


class RequestContext:
    """Pure ASGI (not BaseHTTPMiddleware), so the request id set here is the one the routes and
    the gRPC channel's interceptor see: it reaches the orchestrator as `x-request-id` metadata."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in {"http", "websocket"}:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        request_id = _request_id(headers)
        context.request_id.set(request_id)  # the task serves this one request or socket
        if scope["type"] == "websocket":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message).append(REQUEST_ID_HEADER, request_id)
            await send(message)

        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_body_bytes:
                raise BodyTooLarge(self.max_body_bytes)
            return message

        try:
            declared = headers.get("content-length", "")
            if declared.isdigit() and int(declared) > self.max_body_bytes:
                raise BodyTooLarge(self.max_body_bytes)
            await self.app(scope, limited_receive, send_with_id)
        except BodyTooLarge as exc:
            body = error_body(413, grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
            await JSONResponse(body, 413)(scope, receive, send_with_id)
        except Exception:
            log.exception("request crashed", extra={"path": scope["path"]})
            if not status:
                body = error_body(500, grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE)
                await JSONResponse(body, 500)(scope, receive, send_with_id)
        finally:
            log.info(
                "http request",
                extra={
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": status,
                    "ms": round((time.perf_counter() - started) * 1000, 3),
                },
            )
