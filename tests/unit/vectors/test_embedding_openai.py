"""The OpenAI-compatible embedder against a real HTTP server that speaks the wire format."""

from __future__ import annotations

import base64
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from pantree_common import config as config_loader
from pantree_common.errors import ConfigError, FailedPrecondition, Unavailable
from services.vectors.config import VectorsConfig
from services.vectors.embedders import collection_prefix, load_embedder
from services.vectors.openai_embeddings import OpenAIEmbedder, embeddings_endpoint
from tests.openai_server import FakeOpenAI, Reply, serve_openai

DIMENSIONS = 12
MODEL = "nvidia/nv-embedqa-e5-v5"


def fake_vector(text: str) -> list[float]:
    """A deterministic, unnormalised vector per text (letters counted into buckets)."""
    vector = [0.0] * DIMENSIONS
    for position, char in enumerate(text):
        vector[(ord(char) + position) % DIMENSIONS] += 1.0
    return vector


@dataclass
class Embeddings:
    """The embeddings endpoint's normal answer: a fake vector per input, rows in reverse."""

    base64: bool = False

    def __call__(self, path: str, body: dict[str, Any]) -> Reply:
        if path != "/v1/embeddings":
            return Reply(404, {"detail": "Not Found"})
        if body.get("model") != MODEL:
            return Reply(
                404, {"error": {"message": f"The model `{body.get('model')}` does not exist"}}
            )
        data = [
            {"object": "embedding", "index": i, "embedding": self.encode(fake_vector(text))}
            for i, text in enumerate(body["input"])
        ]
        data.reverse()  # the index, not the position, says which input a row belongs to
        return Reply(200, {"object": "list", "data": data, "model": MODEL, "usage": {}})

    def encode(self, vector: list[float]) -> Any:
        if self.base64:
            return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()
        return vector


@pytest.fixture
def endpoint() -> Iterator[FakeOpenAI]:
    with serve_openai(Embeddings()) as server:
        yield server


def inputs(endpoint: FakeOpenAI) -> list[list[str]]:
    return [body["input"] for _, _, body in endpoint.requests]


def connect(endpoint: FakeOpenAI, **options: Any) -> OpenAIEmbedder:
    options = {"backoff_s": 0.01, "max_backoff_s": 0.05, **options}
    return OpenAIEmbedder(endpoint.url, MODEL, **options)


def unit(vector: list[float]) -> np.ndarray:
    array = np.asarray(vector, dtype=np.float32)
    return array / np.linalg.norm(array)


def test_endpoint_url_with_or_without_v1() -> None:
    for base in (
        "http://nim:8000",
        "http://nim:8000/",
        "http://nim:8000/v1",
        "http://nim:8000/v1/",
    ):
        assert embeddings_endpoint(base) == "http://nim:8000/v1/embeddings"
    assert embeddings_endpoint("https://x/v1/embeddings") == "https://x/v1/embeddings"
    assert embeddings_endpoint("https://x/api/v1") == "https://x/api/v1/embeddings"


def test_dimensions_come_from_a_probe_and_rows_follow_the_index(endpoint: FakeOpenAI) -> None:
    embedder = connect(endpoint)
    assert (embedder.name, embedder.dimensions) == (f"openai-{MODEL}", DIMENSIONS)
    assert collection_prefix(embedder) == "pantree_openai_nvidia_nv_embedqa_e5_v5"
    texts = ["whole milk", "dry dog food", "eggs"]
    vectors = embedder.embed(texts)
    assert vectors.dtype == np.float32 and vectors.shape == (3, DIMENSIONS)
    for row, text in zip(vectors, texts, strict=True):
        np.testing.assert_allclose(row, unit(fake_vector(text)), rtol=1e-6)
    path, headers, body = endpoint.requests[-1]
    assert path == "/v1/embeddings"
    assert body == {"model": MODEL, "input": texts, "encoding_format": "float"}
    assert "Authorization" not in headers
    assert headers["Content-Type"] == "application/json"


def test_base_url_ending_in_v1(endpoint: FakeOpenAI) -> None:
    embedder = OpenAIEmbedder(f"{endpoint.url}/v1/", MODEL)
    assert embedder.embed(["milk"]).shape == (1, DIMENSIONS)
    assert {path for path, _, _ in endpoint.requests} == {"/v1/embeddings"}


def test_inputs_are_sent_in_chunks_and_blank_texts_are_not_sent(endpoint: FakeOpenAI) -> None:
    embedder = connect(endpoint, batch_size=2)
    texts = ["a1", "", "b2", "c3", "  ", "d4", "e5"]
    vectors = embedder.embed(texts)
    assert inputs(endpoint)[1:] == [["a1", "b2"], ["c3", "d4"], ["e5"]]
    assert not vectors[1].any() and not vectors[4].any()
    np.testing.assert_allclose(vectors[6], unit(fake_vector("e5")), rtol=1e-6)
    assert embedder.embed([]).shape == (0, DIMENSIONS)


def test_key_and_input_type_are_sent_when_set(endpoint: FakeOpenAI) -> None:
    connect(endpoint, api_key="nvapi-secret", input_type="passage")
    _, headers, body = endpoint.requests[0]
    assert headers["Authorization"] == "Bearer nvapi-secret"
    assert body["input_type"] == "passage"


def test_base64_rows_are_decoded(endpoint: FakeOpenAI) -> None:
    endpoint.answer = Embeddings(base64=True)
    vectors = connect(endpoint).embed(["oat milk"])
    np.testing.assert_allclose(vectors[0], unit(fake_vector("oat milk")), rtol=1e-6)


@pytest.mark.parametrize("status", [401, 403])
def test_refused_key_is_a_config_error_without_retries(endpoint: FakeOpenAI, status: int) -> None:
    endpoint.replies.append(Reply(status, {"error": {"message": "Invalid API key"}}))
    with pytest.raises(ConfigError) as raised:
        connect(endpoint, api_key="wrong")
    message = raised.value.message
    assert f"HTTP {status}" in message and "Invalid API key" in message
    assert "PANTREE_EMBEDDINGS_API_KEY (currently set)" in message
    assert len(endpoint.requests) == 1


def test_unknown_model_names_the_settings(endpoint: FakeOpenAI) -> None:
    with pytest.raises(ConfigError) as raised:
        OpenAIEmbedder(endpoint.url, "no-such-model", backoff_s=0.01)
    message = raised.value.message
    assert "HTTP 404" in message and "The model `no-such-model` does not exist" in message
    assert "PANTREE_EMBEDDINGS_MODEL ('no-such-model')" in message


def test_other_client_errors_say_what_the_endpoint_said(endpoint: FakeOpenAI) -> None:
    embedder = connect(endpoint)
    said = {"object": "error", "message": "input_type is required for this model"}
    endpoint.replies.append(Reply(400, said))
    with pytest.raises(FailedPrecondition, match="HTTP 400 Bad Request: input_type is required"):
        embedder.embed(["milk"])
    assert len(endpoint.requests) == 2  # the probe, then one try


def test_busy_endpoint_is_retried_honouring_retry_after(endpoint: FakeOpenAI) -> None:
    embedder = connect(endpoint)
    endpoint.replies += [
        Reply(429, {"error": {"message": "Rate limit reached"}}, {"Retry-After": "0.2"}),
        Reply(503, b"upstream restarting"),
    ]
    started = time.monotonic()
    vectors = embedder.embed(["milk"])
    assert time.monotonic() - started >= 0.2
    np.testing.assert_allclose(vectors[0], unit(fake_vector("milk")), rtol=1e-6)
    assert len(endpoint.requests) == 4


def test_failing_endpoint_is_unavailable_after_a_few_attempts(endpoint: FakeOpenAI) -> None:
    embedder = connect(endpoint, attempts=3)
    endpoint.replies += [Reply(500, {"detail": "CUDA out of memory"})] * 5
    with pytest.raises(Unavailable) as raised:
        embedder.embed(["milk"])
    message = raised.value.message
    assert "HTTP 500 Internal Server Error: CUDA out of memory" in message
    assert "gave up after 3 attempts" in message
    assert len(endpoint.requests) == 1 + 3


def test_slow_endpoint_times_out_and_is_unavailable(endpoint: FakeOpenAI) -> None:
    embedder = connect(endpoint, attempts=2, timeout_s=0.2)
    endpoint.replies += [Reply(200, {"data": []}, delay_s=1.0)] * 2
    with pytest.raises(Unavailable, match=r"cannot reach it: .*timed out"):
        embedder.embed(["milk"])


def test_nothing_listening_is_unavailable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(Unavailable, match=r"cannot reach it: .*[Cc]onnection refused"):
        OpenAIEmbedder(f"http://127.0.0.1:{port}", MODEL, attempts=2, backoff_s=0.01)


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"<html>gateway</html>", "something other than JSON: <html>gateway</html>"),
        ({"data": []}, "expected a data list of 1 embeddings, got 0"),
        ({"data": [{"index": 3, "embedding": [1.0]}]}, r"data\[0\] has a missing"),
        ({"data": [{"index": 0, "embedding": ["x"]}]}, "not a list of numbers"),
        ({"data": [{"index": 0, "embedding": [1.0, 2.0]}]}, r"shape \(1, 2\), expected \(1, 12\)"),
    ],
)
def test_malformed_answers_are_reported(endpoint: FakeOpenAI, body: Any, why: str) -> None:
    embedder = connect(endpoint)
    endpoint.replies.append(Reply(200, body))
    with pytest.raises(FailedPrecondition, match=why):
        embedder.embed(["milk"])


def test_factory_builds_it_from_the_settings(endpoint: FakeOpenAI) -> None:
    config = config_loader.load(
        VectorsConfig,
        {
            "PANTREE_EMBEDDER": "openai",
            "PANTREE_EMBEDDINGS_URL": f"{endpoint.url}/v1",
            "PANTREE_EMBEDDINGS_MODEL": MODEL,
            "PANTREE_EMBEDDINGS_API_KEY": "nvapi-secret",
            "PANTREE_EMBEDDINGS_INPUT_TYPE": "query",
            "PANTREE_EMBEDDER_BATCH_SIZE": "3",
        },
    )
    embedder = load_embedder(config)
    assert isinstance(embedder, OpenAIEmbedder)
    assert (embedder.dimensions, embedder.batch_size) == (DIMENSIONS, 3)
    embedder.embed(["a", "b", "c", "d"])
    assert inputs(endpoint)[1:] == [["a", "b", "c"], ["d"]]
    _, headers, body = endpoint.requests[-1]
    assert headers["Authorization"] == "Bearer nvapi-secret" and body["input_type"] == "query"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "PANTREE_EMBEDDER=openai needs PANTREE_EMBEDDINGS_URL"),
        ({"PANTREE_EMBEDDINGS_URL": "nim:8000"}, "needs PANTREE_EMBEDDINGS_URL .* got 'nim:8000'"),
        ({"PANTREE_EMBEDDINGS_URL": "http://nim:8000"}, "needs PANTREE_EMBEDDINGS_MODEL"),
    ],
)
def test_openai_settings_are_validated(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config_loader.load(VectorsConfig, {"PANTREE_EMBEDDER": "openai", **env})
