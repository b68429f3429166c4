"""Embeddings from an OpenAI-compatible endpoint (OpenAI, NVIDIA NIM, vLLM, ...), over urllib.

POST `<base>/v1/embeddings` with `{"model", "input": [...], "encoding_format": "float"}`; the
answer's `data[i].embedding` rows come back in `data[i].index` order. Busy or failing answers
(408, 429, 5xx) and network failures are retried with jittered exponential backoff (honouring
Retry-After), then reported as Unavailable; a refused key or an unknown model or URL is a
ConfigError; any other 4xx is reported with what the endpoint said.
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

import numpy as np
import tenacity
from numpy.typing import NDArray

from pantree_common.errors import ConfigError, FailedPrecondition, Unavailable
from pantree_common.retry import Backoff, Retryable, log_retry, retry_after_s, retryable_status

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 50
PROBE_TEXT = "whole milk 1 gallon"
_EXCERPT_CHARS = 300


def embeddings_endpoint(base_url: str) -> str:
    """The embeddings URL of a base URL given with or without `/v1` (or already complete)."""
    url = base_url.strip().rstrip("/")
    if url.endswith("/embeddings"):
        return url
    if url.endswith("/v1"):
        return f"{url}/embeddings"
    return f"{url}/v1/embeddings"


class OpenAIEmbedder:
    """Vectors from a remote embeddings model; the dimensions are those of its first answer.

    Building one embeds a probe text, so a wrong URL, key or model fails at start-up rather
    than on the first request. Blank texts get zero vectors without being sent (the API rejects
    empty input). Safe to call from several threads.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str = "",
        input_type: str = "",
        batch_size: int = 0,
        timeout_s: float = 30.0,
        attempts: int = 4,
        backoff_s: float = 0.5,
        max_backoff_s: float = 8.0,
    ) -> None:
        if attempts < 1:
            raise ValueError(f"attempts must be >= 1, got {attempts}")
        self.endpoint = embeddings_endpoint(base_url)
        self.model = model
        self.name = f"openai-{model}"
        self.batch_size = batch_size or DEFAULT_BATCH_SIZE
        self._api_key = api_key
        self._input_type = input_type
        self._timeout_s = timeout_s
        self._attempts = attempts
        self._backoff = Backoff(backoff_s, max_backoff_s)
        self.dimensions = 0
        self.dimensions = int(self._request([PROBE_TEXT]).shape[1])

    def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        texts = list(texts)
        vectors = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        sent = [i for i, text in enumerate(texts) if text.strip()]
        for start in range(0, len(sent), self.batch_size):
            rows = sent[start : start + self.batch_size]
            vectors[rows] = self._request([texts[i] for i in rows])
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        np.divide(vectors, norms, out=vectors, where=norms > 0)
        return vectors

    def _request(self, texts: list[str]) -> NDArray[np.float32]:
        payload: dict[str, Any] = {"model": self.model, "input": texts, "encoding_format": "float"}
        if self._input_type:
            payload["input_type"] = self._input_type
        body = json.dumps(payload).encode("utf-8")
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(Retryable),
            stop=tenacity.stop_after_attempt(self._attempts),
            wait=self._backoff,
            before_sleep=log_retry(log, f"embeddings endpoint {self.endpoint}", self._attempts),
            reraise=True,
        )
        try:
            answer = retrying(self._post, body)
        except Retryable as error:
            raise Unavailable(
                f"embeddings endpoint {self.endpoint}: {error.detail} "
                f"(gave up after {self._attempts} attempts)"
            ) from error
        return self._parse(answer, len(texts))

    def _post(self, body: bytes) -> Any:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        request = urllib.request.Request(self.endpoint, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self._timeout_s) as response:
                raw = response.read()
        except urllib.error.HTTPError as error:
            raise self._http_error(error) from error
        except (OSError, http.client.HTTPException) as error:  # refused, reset, timed out
            reason = getattr(error, "reason", None) or error
            raise Retryable(f"cannot reach it: {reason}") from error
        try:
            return json.loads(raw)
        except ValueError as error:
            raise FailedPrecondition(
                f"embeddings endpoint {self.endpoint} answered with something other than JSON: "
                f"{_excerpt(raw)}"
            ) from error

    def _http_error(self, error: urllib.error.HTTPError) -> Exception:
        status = error.code
        try:
            said = _error_message(error.read())
        except OSError:
            said = ""
        answer = f"HTTP {status} {error.reason}" + (f": {said}" if said else "")
        if retryable_status(status):
            return Retryable(answer, retry_after_s(error.headers.get("Retry-After")))
        if status in (401, 403):
            key = "set" if self._api_key else "not set"
            return ConfigError(
                f"embeddings endpoint {self.endpoint} refused the request ({answer}); "
                f"check PANTREE_EMBEDDINGS_API_KEY (currently {key})"
            )
        if status == 404:
            return ConfigError(
                f"embeddings endpoint {self.endpoint} does not know this request ({answer}); "
                f"check PANTREE_EMBEDDINGS_URL and PANTREE_EMBEDDINGS_MODEL ({self.model!r})"
            )
        return FailedPrecondition(
            f"embeddings endpoint {self.endpoint} rejected the request for model "
            f"{self.model!r}: {answer}"
        )

    def _parse(self, answer: Any, count: int) -> NDArray[np.float32]:
        def malformed(why: str) -> FailedPrecondition:
            return FailedPrecondition(
                f"embeddings endpoint {self.endpoint} sent a malformed answer: {why}"
            )

        data = answer.get("data") if isinstance(answer, dict) else None
        if not isinstance(data, list) or len(data) != count:
            got = len(data) if isinstance(data, list) else "no"
            raise malformed(f"expected a data list of {count} embeddings, got {got}")
        rows: list[Any] = [None] * count
        for position, item in enumerate(data):
            index = item.get("index", position) if isinstance(item, dict) else None
            if not isinstance(index, int) or not 0 <= index < count or rows[index] is not None:
                raise malformed(f"data[{position}] has a missing, repeated or bad index")
            rows[index] = _vector(item.get("embedding"))
        try:
            vectors = np.asarray(rows, dtype=np.float32)
        except (ValueError, TypeError) as error:
            raise malformed("an embedding is not a list of numbers of one length") from error
        expected = self.dimensions or (vectors.shape[1] if vectors.ndim == 2 else 0)
        if vectors.shape != (count, expected) or expected == 0:
            raise malformed(f"embeddings of shape {vectors.shape}, expected ({count}, {expected})")
        if not np.isfinite(vectors).all():
            raise malformed("an embedding is not finite")
        return vectors


def _vector(embedding: Any) -> Any:
    """A float list as is; a base64 string (servers that ignore encoding_format) decoded."""
    if isinstance(embedding, str):
        return np.frombuffer(base64.b64decode(embedding), dtype="<f4")
    return embedding


def _error_message(raw: bytes) -> str:
    """What an error body says: OpenAI's error.message, NIM's message or detail, else its text."""
    try:
        body = json.loads(raw)
    except ValueError:
        return _excerpt(raw)
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])[:_EXCERPT_CHARS]
        for key in ("message", "detail", "error"):
            if body.get(key):
                return str(body[key])[:_EXCERPT_CHARS]
    return _excerpt(raw)


def _excerpt(raw: bytes) -> str:
    text = raw.decode("utf-8", errors="replace").strip()
    return text[:_EXCERPT_CHARS] + ("..." if len(text) > _EXCERPT_CHARS else "")
