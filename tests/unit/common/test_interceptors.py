"""The server interceptor's admission (drain, concurrency limit) and its deadline and clean-up
rules, on handlers called directly."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from pantree_common.interceptors import Drain, _wrap_stream, _wrap_unary

METHOD = "/pkg.v1.Orchestrator/Call"
INTERNAL = "/pkg.v1.Step/Call"


class FakeContext:
    """The parts of a ServicerContext the interceptor uses; abort raises like gRPC's."""

    def __init__(self, time_remaining: float | None = None) -> None:
        self._remaining = time_remaining
        self.aborted: grpc.StatusCode | None = None

    def invocation_metadata(self) -> tuple[()]:
        return ()

    def time_remaining(self) -> float | None:
        return self._remaining

    async def abort(self, code: grpc.StatusCode, details: str = "", *_: Any) -> None:
        self.aborted = code
        raise grpc.aio.AbortError()


def test_the_limit_refuses_outside_calls_only_and_draining_comes_first() -> None:
    drain = Drain(max_in_flight=2)
    drain.internal_services = frozenset({"pkg.v1.Step"})
    drain.enter(METHOD)
    drain.enter(METHOD)
    drain.enter(INTERNAL)
    refused = drain.refusal(METHOD)
    assert refused is not None and refused[0] == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert drain.refusal(INTERNAL) is None, "the orchestrator's own steps are never refused"
    drain.leave(METHOD)
    assert drain.refusal(METHOD) is None
    drain.draining = True
    refused = drain.refusal(METHOD)
    assert refused is not None and refused[0] == grpc.StatusCode.UNAVAILABLE
    assert drain.refusal(INTERNAL) is None


async def test_a_result_later_than_the_deadline_is_deadline_exceeded() -> None:
    async def slow(request: Any, context: Any) -> str:
        await asyncio.sleep(0.05)
        return "late"

    handle = _wrap_unary(METHOD, slow, Drain())
    context = FakeContext(time_remaining=0.01)
    with pytest.raises(grpc.aio.AbortError):
        await handle(b"", context)
    assert context.aborted == grpc.StatusCode.DEADLINE_EXCEEDED


async def test_no_work_starts_once_the_deadline_has_passed() -> None:
    started = []

    async def behavior(request: Any, context: Any) -> str:
        started.append(request)
        return "done"

    context = FakeContext(time_remaining=-0.001)
    with pytest.raises(grpc.aio.AbortError):
        await _wrap_unary(METHOD, behavior, Drain())(b"", context)
    assert context.aborted == grpc.StatusCode.DEADLINE_EXCEEDED
    assert started == []


async def test_a_stream_abandoned_at_a_yield_closes_from_another_task() -> None:
    """gRPC leaves a stream its caller gave up on suspended at a `yield`; the event loop closes
    it later from another task. That used to raise (a context variable reset with a token of
    another context) and leave 'Task exception was never retrieved' in the logs."""

    async def months(request: Any, context: Any) -> AsyncIterator[int]:
        for month in range(12):
            yield month

    drain = Drain()
    stream = _wrap_stream(METHOD, months, drain)(b"", FakeContext(time_remaining=30))
    assert await asyncio.create_task(anext(stream)) == 0  # a task runs in a copied context
    assert drain.in_flight == 1
    await stream.aclose()
    assert drain.in_flight == 0
