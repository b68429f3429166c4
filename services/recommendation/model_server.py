"""The model server of the SageMaker bring-your-own-container contract: the trained subscription
model behind `GET /ping` and `POST /invocations` (schema: invocation.py), started by SageMaker as
`docker run IMAGE serve` (the Dockerfile's model-server stage) or locally as `pantree model-server`.

Routes: `GET /ping` answers 200 once a model is loaded, 503 when the server scores with the
heuristic (SageMaker then refuses to put it in service; a local caller may still invoke it).
`POST /invocations` takes `application/json` or `text/csv` (Accept: application/json) and answers
JSON. Errors are JSON `{"error": ..., "field": ...}` (field only when one is at fault) and never a
stack trace: 400 malformed or invalid request, 404 unknown path, 405 wrong method, 406 an Accept
other than JSON, 411 no Content-Length, 413 body over MAX_BODY_BYTES (SageMaker's 6 MB), 415
other content type, 503 an invocation not done within the timeout (SageMaker's 60 s), 500 a bug.

The model directory is, in this order: SM_MODEL_DIR when set; /opt/ml/model (where SageMaker
unpacks the model archive) when it holds a model card; PANTREE_MODEL_PATH when set; otherwise
there is no model and invocations are scored by the statistics' heuristic (`scored_by`). A model
that fails its integrity check stops the server from starting. SIGTERM stops accepting
connections and lets the invocations in flight finish.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any

from pantree_common import config as config_loader
from pantree_common import logging as pantree_logging
from pantree_common.config import setting
from pantree_common.errors import ConfigError, InvalidArgument
from pantree_common.logging import LoggingConfig
from services.recommendation import invocation
from services.recommendation.config import RecommendationConfig
from services.recommendation.invocation import JSON, UnsupportedMediaType
from services.recommendation.model import CARD_FILE, SubscriptionModel
from services.recommendation.model import load as load_model

log = logging.getLogger("pantree.model_server")

MAX_BODY_BYTES = 6 * 1024 * 1024
"""SageMaker's real-time payload limit, 6 MB."""
SAGEMAKER_MODEL_DIR = Path("/opt/ml/model")
_DRAIN_LIMIT_BYTES = 4 * MAX_BODY_BYTES
"""An oversized body up to this size is read and dropped, so its sender gets the 413 rather
than a reset connection; a larger one is cut off."""
_ACCEPTED = frozenset({JSON, "application/*", "*/*"})


@dataclass(frozen=True)
class ModelServerConfig:
    """Where the model server listens and how long an invocation may take."""

    host: str = setting(
        "PANTREE_MODEL_SERVER_HOST", "0.0.0.0", "Address the model server binds to."
    )
    """Every interface by default: SageMaker calls the container from outside it."""
    port: int = setting(
        "SAGEMAKER_BIND_TO_PORT", 8080, "Port of the model server (8080, as SageMaker expects)."
    )
    """SageMaker sets SAGEMAKER_BIND_TO_PORT when it needs another port; 0 picks a free one."""
    sm_model_dir: str = setting(
        "SM_MODEL_DIR",
        "",
        "Model directory; empty: /opt/ml/model if it holds a model, else PANTREE_MODEL_PATH.",
    )
    """SageMaker's name for the directory it unpacked the model archive into."""
    timeout_s: float = setting(
        "PANTREE_MODEL_SERVER_TIMEOUT_S",
        60.0,
        "Longest an invocation may take in seconds, after which it gets 503 (SageMaker: 60).",
    )
    """SageMaker gives up on a container after 60 s; answering first keeps the error clean."""
    logging: LoggingConfig = field(default_factory=LoggingConfig)

    def validate(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"SAGEMAKER_BIND_TO_PORT must be 0 to 65535, got {self.port}")
        if not 0 < self.timeout_s <= 3600:
            raise ConfigError(
                f"PANTREE_MODEL_SERVER_TIMEOUT_S must be above 0 and at most 3600, "
                f"got {self.timeout_s}"
            )


def model_directory(
    sm_model_dir: str, model_path: str, sagemaker_dir: Path = SAGEMAKER_MODEL_DIR
) -> Path | None:
    """The directory to load the model from (see the module doc); None: no model."""
    if sm_model_dir:
        return Path(sm_model_dir)
    if (sagemaker_dir / CARD_FILE).is_file():
        return sagemaker_dir
    return Path(model_path) if model_path else None


@dataclass(frozen=True)
class Reply:
    """An HTTP answer, apart from the HTTP server that sends it."""

    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()
    content_type: str = JSON


def error_reply(
    status: int, message: str, field: str = "", headers: tuple[tuple[str, str], ...] = ()
) -> Reply:
    """The JSON error body every failure gets."""
    body: dict[str, str] = {"error": message}
    if field:
        body["field"] = field
    return Reply(status, json.dumps(body).encode("utf-8"), headers)


class ModelServer:
    """The routes of the contract as plain calls, so the HTTP server below and a test's fake
    SageMaker runtime serve the very same code. Safe to call from several threads."""

    def __init__(
        self,
        model: SubscriptionModel | None,
        timeout_s: float = 60.0,
        max_body_bytes: int = MAX_BODY_BYTES,
        workers: int | None = None,
    ) -> None:
        self.model = model
        self.timeout_s = timeout_s
        self.max_body_bytes = max_body_bytes
        # Invocations run here, so one that overruns the timeout can be answered for.
        self._pool = ThreadPoolExecutor(
            max_workers=workers or os.cpu_count() or 1, thread_name_prefix="invocation"
        )

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def handle(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        content_type: str | None = None,
        accept: str | None = None,
    ) -> Reply:
        """Answer one request; never raises."""
        route = path.split("?", 1)[0]
        expected = {"/ping": "GET", "/invocations": "POST"}.get(route)
        if expected is None:
            return error_reply(
                404, f"no such path {route!r}: the model server has GET /ping, POST /invocations"
            )
        if method != expected:
            return error_reply(
                405, f"{route} takes {expected}, not {method}", headers=(("Allow", expected),)
            )
        if route == "/ping":
            return self.ping()
        return self.invocations(body, content_type, accept)

    def ping(self) -> Reply:
        """200 with the model's description; 503 when only the heuristic is available."""
        if self.model is None:
            return Reply(503, b'{"status":"no model loaded: invocations use the heuristic"}')
        described = invocation.model_description(self.model)
        return Reply(200, json.dumps({"status": "ok", "model": described}).encode("utf-8"))

    def invocations(self, body: bytes, content_type: str | None, accept: str | None) -> Reply:
        if len(body) > self.max_body_bytes:
            return self.too_large(len(body))
        if accept and not {invocation.media_type(a) for a in accept.split(",")} & _ACCEPTED:
            return error_reply(406, f"the model server answers {JSON}, not {accept!r}")
        future = self._pool.submit(self._invoke, body, content_type)
        try:
            return future.result(timeout=self.timeout_s)
        except FutureTimeout:
            future.cancel()
            log.error("invocation timed out", extra={"timeout_s": self.timeout_s})
            return error_reply(503, f"the invocation took longer than {self.timeout_s:g} s")

    def too_large(self, size: int) -> Reply:
        return error_reply(
            413, f"the body has {size:,} bytes, more than the limit of {self.max_body_bytes:,}"
        )

    def _invoke(self, body: bytes, content_type: str | None) -> Reply:
        try:
            request = invocation.parse_request(body, content_type)
            return Reply(200, invocation.invoke(self.model, request).to_json())
        except InvalidArgument as exc:
            violation = exc.violations[0]
            return error_reply(400, f"{violation.field}: {violation.description}", violation.field)
        except UnsupportedMediaType as exc:
            return error_reply(415, exc.message)
        except Exception:
            log.exception("invocation failed")
            return error_reply(500, "the model server failed; its log has the details")


class _Handler(BaseHTTPRequestHandler):
    """HTTP/1.0 (one request per connection, so a stop never waits on an idle client)."""

    server: _HTTPServer
    server_version = "pantree-model-server"

    def do_GET(self) -> None:
        self._reply(self.server.app.handle("GET", self.path, accept=self.headers["Accept"]))

    def do_POST(self) -> None:
        app = self.server.app
        try:
            length = int(self.headers["Content-Length"])
        except (TypeError, ValueError):
            self._reply(error_reply(411, "a Content-Length header is required"))
            return
        if length > app.max_body_bytes:
            if length <= _DRAIN_LIMIT_BYTES:
                self._drain(length)
            self._reply(app.too_large(length))
            return
        body = self.rfile.read(length)
        self._reply(
            app.handle(
                "POST", self.path, body, self.headers["Content-Type"], self.headers["Accept"]
            )
        )

    def _drain(self, length: int) -> None:
        while length > 0:
            chunk = self.rfile.read(min(length, 1 << 20))
            if not chunk:
                return
            length -= len(chunk)

    def _reply(self, reply: Reply) -> None:
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        for name, value in reply.headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(reply.body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug(format % args, extra={"client": self.client_address[0]})


class _HTTPServer(ThreadingHTTPServer):
    # Request threads are joined on close: in-flight invocations finish before the process ends.
    daemon_threads = False

    def __init__(self, address: tuple[str, int], app: ModelServer) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)
        self.app = app


def create_http_server(app: ModelServer, host: str, port: int) -> ThreadingHTTPServer:
    """Bind (port 0 picks a free port: server_address[1] says which); serve_forever serves."""
    return _HTTPServer((host.strip("[]"), port), app)


def serve(app: ModelServer, host: str, port: int) -> None:
    """Serve until SIGTERM or SIGINT, then finish the requests in flight and return."""
    server = create_http_server(app, host, port)

    def stop(signum: int, frame: FrameType | None) -> None:
        log.info("signal received, finishing the invocations in flight", extra={"signal": signum})
        # shutdown() waits for serve_forever, which runs in this (the signalled) thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    described = invocation.model_description(app.model) if app.model else None
    log.info(
        "model server listening",
        extra={"port": server.server_address[1], "model": described or "none: heuristic"},
    )
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        app.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        log.info("model server stopped")


def main(overrides: Mapping[str, str]) -> int:
    """`pantree model-server`: settings from the environment (and .env), then serve."""
    env = config_loader.environment()
    env.update(overrides)
    config = config_loader.load(ModelServerConfig, env)
    pantree_logging.configure(config.logging.level)
    model_path = config_loader.load(RecommendationConfig, env).model_path
    directory = model_directory(config.sm_model_dir, model_path)
    model = load_model(directory) if directory else None
    if directory is None:
        log.warning("no model directory: invocations are scored by the heuristic")
    else:
        log.info("model loaded", extra={"path": str(directory)})
    serve(ModelServer(model, config.timeout_s), config.host, config.port)
    return 0
