"""How much of the language model one process uses: a rate limiter and a small reply cache."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class RateLimiter:
    """Token buckets for requests and tokens per minute, refilled continuously, each holding at
    most a minute's worth. A caller takes what it needs now, or reserves it and sleeps until the
    buckets refill; when that sleep would outlast its budget it takes nothing, so a call that
    cannot start in time is never made. Levels go negative while reserved, so concurrent callers
    queue up without a lock (the event loop runs one at a time)."""

    def __init__(
        self,
        requests_per_minute: int,
        tokens_per_minute: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._capacity = (float(requests_per_minute), float(tokens_per_minute))
        self._level = list(self._capacity)
        self._clock = clock
        self._updated = clock()

    async def acquire(self, tokens: int, budget_s: float) -> bool:
        """Take one request and `tokens` (at most a minute's worth), waiting up to `budget_s`."""
        now = self._clock()
        elapsed, self._updated = now - self._updated, now
        need = (1.0, min(float(tokens), self._capacity[1]))
        wait = 0.0
        for i, capacity in enumerate(self._capacity):
            rate = capacity / 60
            self._level[i] = min(capacity, self._level[i] + elapsed * rate)
            wait = max(wait, (need[i] - self._level[i]) / rate)
        if wait > budget_s:
            return False
        for i in range(2):
            self._level[i] -= need[i]
        if wait > 0:
            await asyncio.sleep(wait)
        return True


class LRUCache(Generic[K, V]):
    """The `size` most recently used entries; size 0 keeps nothing."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._entries: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        value = self._entries.get(key)
        if value is not None:
            self._entries.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        if not self._size:
            return
        self._entries[key] = value
        self._entries.move_to_end(key)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)
