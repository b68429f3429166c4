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


CHAT_MODEL = "meta/llama-3.1-8b-instruct"


def completion(content: str, model: str = CHAT_MODEL) -> Reply:
    """A chat completion whose one choice says `content`."""
    return Reply(
        200,
        {
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "created": 1_764_000_000,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 500, "completion_tokens": 60, "total_tokens": 560},
        },
    )


def prompt_data(body: dict[str, Any]) -> dict[str, Any]:
    """The JSON document between <data> and </data> in a chat request's user message."""
    user = next(m["content"] for m in body["messages"] if m["role"] == "user")
    start, end = user.index("<data>") + len("<data>"), user.rindex("</data>")
    data: dict[str, Any] = json.loads(user[start:end])
    return data


def grounded_reply(data: dict[str, Any]) -> dict[str, Any]:
    """What a model that follows the rules answers: two offered products, the first category,
    the statistical interval, and a sentence citing the data's mean interval."""
    mean = data["statistics"]["mean_interval_days"]
    return {
        "related_product_ids": [p["product_id"] for p in data["offered_products"][:2]],
        "category": data["categories"][0],
        "suggested_interval_days": data["statistical_interval_days"],
        "reasoning": f"You rebuy it about every {mean:g} days, so a delivery on that rhythm fits.",
    }


def grounded_model(path: str, body: dict[str, Any]) -> Reply:
    """A chat endpoint whose model follows the rules (grounded_reply)."""
    if path != "/v1/chat/completions":
        return openai_error(404, f"Unknown path {path}")
    if body.get("model") != CHAT_MODEL:
        return openai_error(404, f"The model `{body.get('model')}` does not exist", "NotFound")
    return completion(json.dumps(grounded_reply(prompt_data(body))))
