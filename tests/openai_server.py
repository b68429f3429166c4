"""A real HTTP server on port 0 that speaks the OpenAI wire format, for the clients' tests.

Each test gives the normal answer as a function of (path, JSON body) and can queue replies
(errors, delays, broken bodies) that are sent first, one per request.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    status: int
    body: Any
    """JSON-able, or bytes sent as they are."""
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


Answer = Callable[[str, dict[str, Any]], Reply]


@dataclass
class FakeOpenAI:
    """What the server was asked, and the replies to give before answering normally."""

    url: str
    answer: Answer
    replies: list[Reply] = field(default_factory=list)
    requests: list[tuple[str, dict[str, str], dict[str, Any]]] = field(default_factory=list)


def openai_error(status: int, message: str, kind: str = "invalid_request_error") -> Reply:
    """An error reply with OpenAI's body: {"error": {"message", "type", "code"}}."""
    return Reply(status, {"error": {"message": message, "type": kind, "code": None}})


class _QuietServer(ThreadingHTTPServer):
    """A client that gave up (the timeout tests) leaves the reply with nobody to read it."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


@contextmanager
def serve_openai(answer: Answer) -> Iterator[FakeOpenAI]:
    state = FakeOpenAI(url="", answer=answer)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers["Content-Length"])
            body = json.loads(self.rfile.read(length))
            state.requests.append((self.path, dict(self.headers.items()), body))
            reply = state.replies.pop(0) if state.replies else state.answer(self.path, body)
            time.sleep(reply.delay_s)
            raw = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = _QuietServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
