"""ChatModel over the `openai` package: any OpenAI-compatible chat-completions endpoint (NVIDIA
NIM, build.nvidia.com, vLLM, OpenAI).

The client's own retries are off: LLMInsights runs the one retry policy (pantree_common.retry)
within the caller's deadline. Busy or failing answers and network failures become Retryable;
every other refusal is a ChatError.
"""

from __future__ import annotations

from typing import Any

import openai

from pantree_common.retry import Retryable, retry_after_s, retryable_status
from services.insights.llm import ChatError, ChatRequest

SCHEMA_NAME = "pantree_insight"
NO_KEY = "not-used"
"""Sent when no key is configured: the client insists on one, a local NIM ignores it."""


def chat_base_url(base_url: str) -> str:
    """The API root the client appends /chat/completions to, given with or without /v1 (or as
    the full chat-completions URL)."""
    url = base_url.strip().rstrip("/").removesuffix("/chat/completions")
    return url if url.endswith("/v1") else f"{url}/v1"


def structured_output(kind: str, schema: Any) -> dict[str, Any]:
    """Request options holding the reply to `schema`, the way the server understands
    (PANTREE_LLM_STRUCTURED_OUTPUT)."""
    if kind == "json_schema":
        return {
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": SCHEMA_NAME, "schema": schema, "strict": True},
            }
        }
    if kind == "guided_json":
        return {"extra_body": {"guided_json": schema}}
    if kind == "nvext":
        return {"extra_body": {"nvext": {"guided_json": schema}}}
    return {}


class OpenAIChat:
    """Deterministic (temperature 0) chat completions from one model."""

    def __init__(
        self, base_url: str, model: str, *, api_key: str = "", structured: str = "json_schema"
    ) -> None:
        self.endpoint = chat_base_url(base_url)
        self._model = model
        self._structured = structured
        self._client = openai.AsyncOpenAI(
            base_url=self.endpoint, api_key=api_key or NO_KEY, max_retries=0
        )

    @property
    def model(self) -> str:
        return self._model

    async def complete(self, request: ChatRequest, timeout_s: float) -> str:
        try:
            response = await self._client.chat.completions.create(
                model=self._model,
                messages=[
                    {"role": "system", "content": request.system},
                    {"role": "user", "content": request.user},
                ],
                max_tokens=request.max_tokens,
                temperature=0,
                timeout=timeout_s,
                **structured_output(self._structured, dict(request.schema)),
            )
        except openai.APIStatusError as error:
            detail = f"{self.endpoint}: HTTP {error.status_code}: {error.message}"
            if retryable_status(error.status_code):
                retry_after = retry_after_s(error.response.headers.get("retry-after"))
                raise Retryable(detail, retry_after) from error
            raise ChatError(detail) from error
        except openai.APIConnectionError as error:  # refused, reset, timed out
            raise Retryable(f"{self.endpoint}: cannot reach it: {error}") from error
        except openai.APIError as error:  # a 200 whose body is no chat completion
            raise ChatError(f"{self.endpoint}: {error}") from error
        content = response.choices[0].message.content if response.choices else None
        if not isinstance(content, str):
            raise ChatError(f"{self.endpoint}: the completion holds no message content")
        return content

    async def close(self) -> None:
        await self._client.close()
