"""The language-model path of the insights step: ask within limits, keep only what checks out.

For each of the best PANTREE_LLM_CANDIDATES candidates, concurrently: look the prompt up in the
reply cache; else take a request and its tokens from the rate limiter, call the model (tenacity:
jittered backoff honouring Retry-After on 429, 5xx and timeouts, as many attempts as the
deadline allows) and check the reply (llm.accept). A candidate whose reply is rejected, whose
call fails, or that is not done by the deadline keeps its rule-based insight; each such
candidate is logged and counted by reason (pantree_llm_fallbacks_total).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Collection, Sequence

import tenacity
from pantree.domain.v1 import offer_pb2
from pantree.insights.v1 import insights_service_pb2 as insights_pb2

from pantree_common.domain import catalog
from pantree_common.metrics import LLM_CACHE_LOOKUPS, LLM_FALLBACKS
from pantree_common.retry import Backoff, Retryable, log_retry
from services.insights import fallback, llm
from services.insights.config import InsightsConfig
from services.insights.limits import LRUCache, RateLimiter
from services.insights.openai_chat import OpenAIChat

log = logging.getLogger("pantree.insights")

BACKOFF_S = 0.25
MAX_BACKOFF_S = 4.0


class _RateLimited(Exception):
    """The rate limiter cannot hand out a call before the deadline."""


class LLMInsights:
    """Insights from a ChatModel, each grounded in the data of its candidate."""

    def __init__(self, chat: llm.ChatModel, config: InsightsConfig) -> None:
        self._chat = chat
        self._config = config
        self._limiter = RateLimiter(config.llm_requests_per_minute, config.llm_tokens_per_minute)
        self._cache: LRUCache[tuple[str, str], offer_pb2.Insight] = LRUCache(config.llm_cache_size)
        self._backoff = Backoff(BACKOFF_S, MAX_BACKOFF_S)

    async def close(self) -> None:
        await self._chat.close()

    async def improve(
        self,
        candidates: Sequence[insights_pb2.Candidate],
        insights: Sequence[offer_pb2.Insight],
        archetype: str,
        remaining_s: float | None,
    ) -> list[offer_pb2.Insight]:
        """`insights` (the rule-based ones, in candidate order) with those of the best
        candidates replaced by accepted model insights, within min(PANTREE_LLM_TIMEOUT_S,
        `remaining_s`)."""
        budget = self._config.llm_timeout_s
        if remaining_s is not None:
            budget = min(budget, remaining_s)
        improved = list(insights)
        if budget <= 0:
            return improved
        deadline = time.monotonic() + budget
        shopper = catalog.ARCHETYPES.get(archetype)
        bought = {candidate.product.product_id for candidate in candidates}
        best = min(len(candidates), self._config.llm_candidates)
        tasks = [
            asyncio.ensure_future(
                self.explain(candidates[i], insights[i], shopper, bought, deadline)
            )
            for i in range(best)
        ]
        _, late = await asyncio.wait(tasks, timeout=budget)
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)
        if late:
            LLM_FALLBACKS.labels("deadline").inc(len(late))
            log.warning(
                "language model too slow: rule-based insights for %d candidates",
                len(late),
                extra={"budget_s": round(budget, 3)},
            )
        for i, task in enumerate(tasks):
            if task in late:
                continue
            answer = task.result()
            if isinstance(answer, llm.Rejection):
                LLM_FALLBACKS.labels(answer.reason).inc()
                log.warning(
                    "language-model insight dropped (%s): %s",
                    answer.reason,
                    answer.detail,
                    extra={"product_id": candidates[i].product.product_id},
                )
            else:
                improved[i] = answer
        return improved

    async def explain(
        self,
        candidate: insights_pb2.Candidate,
        plain: offer_pb2.Insight,
        shopper: catalog.Archetype | None,
        bought: Collection[str],
        deadline: float,
    ) -> offer_pb2.Insight | llm.Rejection:
        """The model's insight on `candidate` (whose rule-based one is `plain`), from the cache
        or a call finished by `deadline` (time.monotonic()), or why there is none."""
        request, grounding = llm.ask(
            candidate,
            plain,
            fallback.offered_products(candidate, bought),
            shopper,
            tolerance=self._config.llm_interval_tolerance,
            max_tokens=self._config.llm_max_tokens,
        )
        key = request.cache_key(self._chat.model)
        cached = self._cache.get(key)
        LLM_CACHE_LOOKUPS.labels("hit" if cached is not None else "miss").inc()
        if cached is not None:
            return cached
        try:
            text = await self._complete(request, deadline)
        except _RateLimited:
            return llm.Rejection("rate_limited", "the rate limit leaves no call in time")
        except Retryable as error:
            return llm.Rejection("unavailable", error.detail)
        except llm.ChatError as error:
            return llm.Rejection("refused", str(error))
        except Exception as error:  # a bug here must cost one insight, never the response
            log.exception("language-model path failed", extra={"product_id": grounding.product_id})
            return llm.Rejection("error", repr(error))
        verdict = llm.accept(text, grounding)
        if not isinstance(verdict, llm.Rejection):
            self._cache.put(key, verdict)
        return verdict

    async def _complete(self, request: llm.ChatRequest, deadline: float) -> str:
        attempts = self._config.llm_attempts
        retrying = tenacity.AsyncRetrying(
            retry=tenacity.retry_if_exception_type(Retryable),
            stop=tenacity.stop_after_attempt(attempts)
            | tenacity.stop_before_delay(deadline - time.monotonic()),
            wait=self._backoff,
            before_sleep=log_retry(log, f"chat model {self._chat.model}", attempts),
            reraise=True,
        )
        return await retrying(self._attempt, request, deadline)

    async def _attempt(self, request: llm.ChatRequest, deadline: float) -> str:
        if not await self._limiter.acquire(request.estimated_tokens(), deadline - time.monotonic()):
            raise _RateLimited
        return await self._chat.complete(request, timeout_s=deadline - time.monotonic())


def connect(config: InsightsConfig) -> LLMInsights:
    """The model path PANTREE_LLM_* describe, over the openai client (no request is made)."""
    chat = OpenAIChat(
        config.llm_base_url,
        config.llm_model,
        api_key=config.api_key(),
        structured=config.llm_structured_output,
    )
    return LLMInsights(chat, config)
