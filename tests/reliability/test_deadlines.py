"""Fault 4, measured: expired deadlines and cancelled streams. A call whose deadline has passed
ends DEADLINE_EXCEEDED; a stream cancelled after its first month stops the work on the server:
how long until every handler has exited, and how much CPU the process spent meanwhile.
(tests/service/test_orchestrator.py checks both once in `make test`.)"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import grpc
import pytest
from pantree.orchestrator.v1 import orchestrator_service_pb2 as pb

from tests.histories import rhythmic_history
from tests.reliability.harness import follow_stream, millis, percentile, record_figures
from tests.service.conftest import Mesh, seed_request, start_mesh, stop_mesh

ROUNDS = 20


async def cancel_after_first_month(mesh: Mesh) -> tuple[float, float]:
    """Seconds from the cancel until no handler runs, and CPU seconds spent meanwhile."""
    call = mesh.orchestrator.ProcessSeed(seed_request(months=24), timeout=30)
    while not (await call.read()).HasField("month"):
        pass
    cpu, cancelled = time.process_time(), time.monotonic()
    call.cancel()
    assert await mesh.server.drain.wait_idle(5.0), "handlers still running 5 s after cancel"
    return time.monotonic() - cancelled, time.process_time() - cpu


@pytest.mark.chaos
@pytest.mark.timeout(300)
@pytest.mark.parametrize("month_delay_ms", [0, 100])
async def test_cancel_after_the_first_month_stops_the_server_work(
    tmp_path: Path, month_delay_ms: int
) -> None:
    mesh = await start_mesh(tmp_path, PANTREE_SIMULATION_MONTH_DELAY_MS=str(month_delay_ms))
    try:
        started = time.process_time()
        full = await follow_stream(mesh.orchestrator, seed_request(months=24), 30)
        full_cpu = time.process_time() - started
        assert full.code == grpc.StatusCode.OK
        measured = [await cancel_after_first_month(mesh) for _ in range(ROUNDS)]
    finally:
        await stop_mesh(mesh)
    exits, cpus = [m[0] for m in measured], [m[1] for m in measured]
    record_figures(
        f"cancel-delay{month_delay_ms}",
        {
            "rounds": ROUNDS,
            "handlers_exit_p50_ms": millis(percentile(exits, 50)),
            "handlers_exit_p99_ms": millis(percentile(exits, 99)),
            "cpu_after_cancel_p50_ms": millis(percentile(cpus, 50)),
            "cpu_after_cancel_p99_ms": millis(percentile(cpus, 99)),
            "cpu_full_stream_ms": millis(full_cpu),
        },
    )
    assert percentile(exits, 99) < 1.0


@pytest.mark.chaos
async def test_one_millisecond_deadlines_are_deadline_exceeded(tmp_path: Path) -> None:
    mesh = await start_mesh(tmp_path)
    codes: Counter[str] = Counter()
    try:
        for _ in range(100):
            try:
                await mesh.orchestrator.Recommend(
                    pb.RecommendRequest(history=rhythmic_history()), timeout=0.001
                )
                codes["Recommend OK"] += 1
            except grpc.aio.AioRpcError as error:
                codes[f"Recommend {error.code().name}"] += 1
            outcome = await follow_stream(mesh.orchestrator, seed_request(), 0.001)
            codes[f"ProcessSeed {outcome.code.name}"] += 1
        assert await mesh.server.drain.wait_idle(1.0)
    finally:
        await stop_mesh(mesh)
    record_figures("deadline-1ms", dict(codes))
    assert set(codes) == {"Recommend DEADLINE_EXCEEDED", "ProcessSeed DEADLINE_EXCEEDED"}
