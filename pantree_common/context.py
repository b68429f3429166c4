"""Per-request values that follow a call through the mesh: request id and deadline."""

from __future__ import annotations

import contextvars
import time
import uuid

REQUEST_ID_METADATA_KEY = "x-request-id"

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")
# Absolute deadline of the inbound call on the time.monotonic() clock; None when unbounded.
deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("deadline", default=None)


def new_request_id() -> str:
    return uuid.uuid4().hex[:16]


def remaining_seconds() -> float | None:
    """Seconds left before the inbound call's deadline, or None when it has none."""
    end = deadline.get()
    return None if end is None else end - time.monotonic()
