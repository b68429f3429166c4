"""A stand-in for the SageMaker runtime service on a local port: its REST path
`POST /endpoints/{name}/invocations` forwarded to the real model server code (ModelServer.handle)
and answered in the runtime's wire format, with faults to switch on; plus a small trained model
and analyses to score."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from pantree.domain.v1 import analysis_pb2, product_pb2

from services.frequency.statistics import analyze, to_protos
from services.recommendation import training
from services.recommendation.model import SubscriptionModel
from services.recommendation.model_server import ModelServer
from tests.unit.recommendation.synthetic import CUTOFF, DAY0, FAST, synthetic

ENDPOINT = "pantree-subscriptions"
LOG_STREAM = "arn:aws:logs:us-east-1:123456789012:log-group:/aws/sagemaker/Endpoints/x"


def use_dummy_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Dummy AWS credentials; nothing read from this machine's AWS files or instance metadata."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@cache
def trained_model() -> SubscriptionModel:
    """The synthetic shoppers' model, trained once per test session (about 2 s)."""
    transactions, _ = synthetic()
    return training.fit(transactions, CUTOFF, FAST)


@cache
def _analyses(count: int) -> tuple[list[analysis_pb2.HistoryAnalysis], dict[str, Any]]:
    transactions, _ = synthetic()
    histories = transactions.window(DAY0, CUTOFF).histories(list(range(count)))
    analyses = to_protos(histories, analyze(histories, [CUTOFF] * count, 3), [CUTOFF] * count, 3)
    products = {p.product_id: p.to_proto() for h in histories for p in h.products}
    return analyses, products


def analyses(
    count: int,
) -> tuple[list[analysis_pb2.HistoryAnalysis], dict[str, product_pb2.Product]]:
    """The first `count` synthetic shoppers' analyses as of the cutoff, and their products."""
    found, products = _analyses(count)
    return [analysis_pb2.HistoryAnalysis.FromString(a.SerializeToString()) for a in found], dict(
        products
    )


@dataclass
class Fault:
    """What the runtime answers instead of forwarding (or, with only a delay, before it)."""

    status: int = 0
    error_type: str = ""
    body: dict[str, Any] | bytes = field(default_factory=dict)
    content_type: str = "application/json"
    delay_s: float = 0.0


def throttled() -> Fault:
    return Fault(429, "ThrottlingException", {"message": "Rate exceeded"})


def model_error(original_status: int, message: str = "model server failed") -> Fault:
    return Fault(
        424,
        "ModelError",
        {
            "message": f"Received server error ({original_status}) from primary with message "
            f'"{message}". See {LOG_STREAM} in account 123456789012 for more information.',
            "OriginalStatusCode": original_status,
            "OriginalMessage": message,
            "LogStreamArn": LOG_STREAM,
        },
    )


@dataclass
class FakeRuntime:
    """The runtime's address, its faults (used first-in first-out, one per call, `always` on
    every call once they run out) and what it was sent."""

    app: ModelServer
    url: str = ""
    faults: list[Fault] = field(default_factory=list)
    always: Fault | None = None
    calls: list[dict[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next_fault(self) -> Fault | None:
        with self.lock:
            return self.faults.pop(0) if self.faults else self.always


class _QuietServer(ThreadingHTTPServer):
    """A client that timed out leaves the answer with nobody to read it."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


@contextmanager
def fake_runtime(model: SubscriptionModel | None) -> Iterator[FakeRuntime]:
    """A running fake SageMaker runtime in front of a model server holding `model`."""
    state = FakeRuntime(ModelServer(model, timeout_s=10))

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            with state.lock:
                state.calls.append(dict(self.headers.items()))
            parts = self.path.split("/")
            if len(parts) != 4 or parts[1] != "endpoints" or parts[3] != "invocations":
                self.answer(404, {"message": "Not Found"}, "UnknownOperationException")
                return
            if parts[2] != ENDPOINT:
                message = f"Endpoint {parts[2]} of account 123456789012 not found."
                self.answer(400, {"message": message}, "ValidationError")
                return
            fault = state.next_fault()
            if fault is not None:
                time.sleep(fault.delay_s)
                if fault.status:
                    self.answer(fault.status, fault.body, fault.error_type, fault.content_type)
                    return
            reply = state.app.handle(
                "POST", "/invocations", body, self.headers["Content-Type"], self.headers["Accept"]
            )
            if reply.status == 200:
                self.answer(200, reply.body, content_type=reply.content_type)
            else:  # how SageMaker reports a container's error answer
                self.answer(
                    424,
                    {
                        "message": f"Received client error ({reply.status}) from primary",
                        "OriginalStatusCode": reply.status,
                        "OriginalMessage": reply.body.decode(),
                        "LogStreamArn": LOG_STREAM,
                    },
                    "ModelError",
                )

        def answer(
            self,
            status: int,
            body: dict[str, Any] | bytes,
            error_type: str = "",
            content_type: str = "application/json",
        ) -> None:
            raw = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(raw)))
            self.send_header("x-amzn-RequestId", "4b2a2f9e-0000-4000-8000-000000000000")
            if error_type:
                self.send_header("x-amzn-ErrorType", error_type)
            else:
                self.send_header("x-Amzn-Invoked-Production-Variant", "AllTraffic")
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = _QuietServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        state.app.close()
