"""The rate limiter's buckets and the reply cache."""

from __future__ import annotations

import asyncio
import time

from services.insights.limits import LRUCache, RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_minute_of_requests_may_come_at_once_then_they_wait_for_the_refill() -> None:
    clock = Clock()
    limiter = RateLimiter(requests_per_minute=3, tokens_per_minute=10_000, clock=clock)

    assert [await limiter.acquire(10, budget_s=0) for _ in range(3)] == [True] * 3
    assert not await limiter.acquire(10, budget_s=19.9), "the next request comes in 20 s"
    clock.now += 20
    assert await limiter.acquire(10, budget_s=0)


async def test_tokens_are_limited_too_and_a_large_ask_takes_at_most_a_minute() -> None:
    clock = Clock()
    limiter = RateLimiter(requests_per_minute=100, tokens_per_minute=600, clock=clock)

    assert await limiter.acquire(5000, budget_s=0), "clamped to the bucket's 600"
    assert not await limiter.acquire(60, budget_s=5), "60 tokens refill in 6 s"
    clock.now += 6
    assert await limiter.acquire(60, budget_s=0)


async def test_a_caller_within_its_budget_reserves_and_sleeps_until_the_refill() -> None:
    limiter = RateLimiter(requests_per_minute=600, tokens_per_minute=100_000)
    for _ in range(600):
        assert await limiter.acquire(1, budget_s=0)
    started = time.monotonic()
    # One request per 0.1 s: the first caller reserves the next slot, the second the one after.
    first, second = await asyncio.gather(
        limiter.acquire(1, budget_s=0.15), limiter.acquire(1, budget_s=0.15)
    )
    assert (first, second) == (True, False)
    assert 0.05 < time.monotonic() - started < 0.5


def test_the_cache_keeps_the_most_recently_used_entries() -> None:
    cache: LRUCache[str, int] = LRUCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1
    cache.put("c", 3)
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (1, None, 3)

    off: LRUCache[str, int] = LRUCache(0)
    off.put("a", 1)
    assert off.get("a") is None
