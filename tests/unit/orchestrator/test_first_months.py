"""Streams past their simulation let the streams still before their first month go first, for
a bounded time, and a stream that ends early never holds the others back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator

from services.orchestrator.pipeline import FIRST_MONTH_PRIORITY_S, FirstMonths


async def _waited(first_months: FirstMonths) -> float:
    started = time.monotonic()
    await first_months.let_them_go_first()
    return time.monotonic() - started


async def test_nobody_waits_when_every_stream_sent_its_first_month() -> None:
    first_months = FirstMonths()
    assert await _waited(first_months) < 0.01
    with first_months.pending() as sent:
        sent()
        assert await _waited(first_months) < 0.01


async def test_later_stages_wait_until_the_first_month_is_sent() -> None:
    first_months = FirstMonths()
    with first_months.pending() as sent:
        waiting = asyncio.create_task(_waited(first_months))
        await asyncio.sleep(0.01)
        assert not waiting.done()
        sent()
        assert await waiting < FIRST_MONTH_PRIORITY_S


async def test_the_wait_is_bounded() -> None:
    first_months = FirstMonths()
    with first_months.pending():
        waited = await _waited(first_months)
    assert FIRST_MONTH_PRIORITY_S <= waited < FIRST_MONTH_PRIORITY_S + 0.05


async def test_a_stream_that_ends_before_its_first_month_releases_its_place() -> None:
    first_months = FirstMonths()

    async def stream() -> AsyncGenerator[int, None]:
        with first_months.pending() as sent:
            yield 1
            yield 2
            sent()
            sent()  # twice: counted once

    events = stream()
    assert await anext(events) == 1
    assert await _waited(first_months) >= FIRST_MONTH_PRIORITY_S  # still before its month
    await events.aclose()  # a cancelled call closes its stream
    assert await _waited(first_months) < 0.01

    finished = [event async for event in stream()]
    assert finished == [1, 2]
    assert await _waited(first_months) < 0.01
