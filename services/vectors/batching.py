"""Group commit: concurrent writes that arrive while one is in progress go out together.

Each write to the vector store has a large fixed cost (a round trip, a WAL append), so under
load N customers' profiles cost one call instead of N. A caller returns only once its own item
is written (or fails with the batch's error): nothing is acknowledged before it is stored.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class GroupCommit(Generic[T]):
    def __init__(self, write: Callable[[list[T]], Awaitable[None]], max_batch: int = 512) -> None:
        self._write = write
        self._max_batch = max_batch
        self._pending: list[tuple[T, asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> None:
        """Write `item`, together with whatever else is waiting; returns once it is written."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((item, done))
        if self._flusher is None or self._flusher.done():
            # A fresh context: the shared write must not inherit this caller's deadline.
            self._flusher = asyncio.create_task(self._flush(), context=contextvars.Context())
        # A caller that gives up (cancelled) does not cancel the write others share.
        await asyncio.shield(done)

    async def _flush(self) -> None:
        while self._pending:
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
            try:
                await self._write([item for item, _ in batch])
            except Exception as exc:  # every waiter of the batch learns why
                for _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
            else:
                for _, done in batch:
                    if not done.done():
                        done.set_result(None)

    async def drain(self) -> None:
        """Wait until everything submitted so far is written."""
        if self._flusher is not None:
            await asyncio.shield(self._flusher)
