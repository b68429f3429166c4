"""The one place where failures become HTTP answers: gRPC status → HTTP status + JSON body.

Every error the gateway returns, REST or WebSocket, has the same body:
`{"error": {"code": 400, "status": "INVALID_ARGUMENT", "message": ..., "requestId": ...,
"fieldViolations": [{"field": ..., "description": ...}]}}`. Nothing answers with a traceback.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import grpc
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from gateway.security import RateLimited
from pantree_common import context
from pantree_common.errors import FieldViolation, PantreeError, bad_request_violations

log = logging.getLogger("pantree.gateway")

# google.rpc.Code's documented HTTP mapping, except FAILED_PRECONDITION: 409 keeps 400 for
# requests whose fields are wrong, and tells the caller the server's state is what blocks it.
HTTP_STATUS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}
# The reverse, for the HTTP errors of the web framework itself (unknown route or method).
_GRPC_STATUS: dict[int, grpc.StatusCode] = {
    404: grpc.StatusCode.NOT_FOUND,
    405: grpc.StatusCode.UNIMPLEMENTED,
}

INTERNAL_MESSAGE = "internal error; see the gateway log for this request id"
# The orchestrator refusing the gateway's own token is the gateway's misconfiguration: the
# caller, whose token the gateway already checked, gets a 500, not a 401 or 403.
_OWN_CREDENTIALS = frozenset({grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED})


def error_body(
    http_status: int,
    code: grpc.StatusCode,
    message: str,
    violations: Sequence[FieldViolation] = (),
) -> dict[str, Any]:
    error: dict[str, Any] = {
        "code": http_status,
        "status": code.name,
        "message": message,
        "requestId": context.request_id.get(),
    }
    if violations:
        error["fieldViolations"] = [
            {"field": v.field, "description": v.description} for v in violations
        ]
    return {"error": error}


def rpc_error_body(exc: grpc.aio.AioRpcError | PantreeError) -> tuple[int, dict[str, Any]]:
    """HTTP status and body for a failed orchestrator call or a request the gateway refused."""
    if isinstance(exc, PantreeError):
        code, message = exc.code, exc.message
        violations: Sequence[FieldViolation] = getattr(exc, "violations", ())
    else:
        code, message, violations = exc.code(), exc.details() or "", bad_request_violations(exc)
        if code in _OWN_CREDENTIALS:
            log.error(
                "the orchestrator refused the gateway's credentials (PANTREE_AUTH_CLIENT_TOKEN)",
                extra={"code": code.name, "error": message},
            )
            code, message, violations = grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE, ()
    status = HTTP_STATUS[code]
    return status, error_body(status, code, message, violations)


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers=headers)


async def _rpc_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, grpc.aio.AioRpcError | PantreeError)
    status, body = rpc_error_body(exc)
    headers = {}
    if isinstance(exc, RateLimited):
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after_s)))
    elif status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="pantree"'
    return _json(status, body, headers)


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    code = _GRPC_STATUS.get(exc.status_code, grpc.StatusCode.INVALID_ARGUMENT)
    return _json(exc.status_code, error_body(exc.status_code, code, str(exc.detail)))


def install(app: FastAPI) -> None:
    """Register the handlers that turn failed calls and refused requests into the error body
    above; the body limit and unforeseen exceptions are handled in gateway.middleware."""
    app.add_exception_handler(grpc.aio.AioRpcError, _rpc_error)
    app.add_exception_handler(PantreeError, _rpc_error)
    app.add_exception_handler(HTTPException, _http_error)


# The error body as OpenAPI documents it, shared by every operation's error responses.
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "status", "message", "requestId"],
            "properties": {
                "code": {"type": "integer", "description": "The HTTP status."},
                "status": {"type": "string", "description": "The gRPC status code name."},
                "message": {"type": "string"},
                "requestId": {"type": "string"},
                "fieldViolations": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["field", "description"],
                        "properties": {
                            "field": {"type": "string"},
                            "description": {"type": "string"},
                        },
                    },
                },
            },
        }
    },
}
