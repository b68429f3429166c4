"""Group commit: one write for the items that queue up behind a write in progress."""

from __future__ import annotations

import asyncio
import time

import pytest

from pantree_common import context
from services.vectors.batching import GroupCommit


class SlowWriter:
    def __init__(self, fail: bool = False) -> None:
        self.batches: list[list[int]] = []
        self.release = asyncio.Event()
        self.fail = fail

    async def __call__(self, batch: list[int]) -> None:
        self.batches.append(batch)
        await self.release.wait()
        if self.fail:
            raise OSError("disk full")


async def test_items_queued_behind_a_write_go_out_together() -> None:
    writer = SlowWriter()
    commit = GroupCommit(writer)
    first = asyncio.create_task(commit.submit(1))
    await asyncio.sleep(0)
    rest = [asyncio.create_task(commit.submit(n)) for n in (2, 3, 4)]
    await asyncio.sleep(0)
    assert writer.batches == [[1]]
    writer.release.set()
    await asyncio.gather(first, *rest)
    assert writer.batches == [[1], [2, 3, 4]]


async def test_every_waiter_of_a_failed_batch_gets_the_error() -> None:
    writer = SlowWriter(fail=True)
    commit = GroupCommit(writer)
    tasks = [asyncio.create_task(commit.submit(n)) for n in (1, 2)]
    await asyncio.sleep(0)
    writer.release.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert [type(r) for r in results] == [OSError, OSError]


async def test_a_cancelled_caller_does_not_cancel_the_shared_write() -> None:
    writer = SlowWriter()
    commit = GroupCommit(writer)
    impatient = asyncio.create_task(commit.submit(1))
    patient = asyncio.create_task(commit.submit(2))
    await asyncio.sleep(0)
    impatient.cancel()
    with pytest.raises(asyncio.CancelledError):
        await impatient
    writer.release.set()
    await patient
    await commit.drain()
    assert writer.batches == [[1, 2]]


async def test_batches_are_capped() -> None:
    writer = SlowWriter()
    writer.release.set()
    commit = GroupCommit(writer, max_batch=2)
    await asyncio.gather(*(commit.submit(n) for n in range(5)))
    assert writer.batches == [[0, 1], [2, 3], [4]]


async def test_a_shared_write_does_not_inherit_its_first_callers_deadline() -> None:
    """The store bounds a call by the deadline in its context; a write shared by many callers
    must keep the store's own timeout, not the first caller's time left."""
    seen: list[float | None] = []

    async def write(batch: list[int]) -> None:
        seen.append(context.deadline.get())

    context.deadline.set(time.monotonic() + 0.01)
    await GroupCommit(write).submit(1)
    assert seen == [None]
