"""Fault 5: overload. Past PANTREE_MAX_CONCURRENT_RPCS calls from outside, a server refuses
the next at once with RESOURCE_EXHAUSTED while the calls it took finish; health answers all
along; many clients that read their streams slowly hold no more memory than the limit allows."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pantree.orchestrator.v1 import orchestrator_service_pb2 as pb
from pantree.orchestrator.v1.orchestrator_service_pb2_grpc import OrchestratorServiceStub

from tests.conftest import unused_port
from tests.e2e.conftest import start_server
from tests.histories import rhythmic_history
from tests.reliability.harness import (
    follow_stream,
    millis,
    percentile,
    record_figures,
    sample_process,
    streams_past_month,
)
from tests.service.conftest import Mesh, seed_request, start_mesh, stop_mesh

SERVING = health_pb2.HealthCheckResponse.SERVING


async def refused_in(call: object) -> float:
    """Seconds until an awaited call or stream failed with RESOURCE_EXHAUSTED."""
    started = time.monotonic()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        if isinstance(call, grpc.aio.UnaryStreamCall):
            await call.read()
        else:
            await call  # type: ignore[misc]
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, caught.value
    assert "retry with backoff" in (caught.value.details() or "")
    return time.monotonic() - started


async def test_calls_past_the_limit_are_refused_at_once_and_health_answers(
    tmp_path: Path,
) -> None:
    limit = 4
    mesh: Mesh = await start_mesh(
        tmp_path,
        PANTREE_MAX_CONCURRENT_RPCS=str(limit),
        PANTREE_SIMULATION_MONTH_DELAY_MS="100",
    )
    try:
        requests = [seed_request(months=6, random_seed=i) for i in range(limit)]
        tasks, reached = await streams_past_month(mesh.orchestrator, requests, 1, 30)
        await reached.wait()
        history = pb.RecommendRequest(history=rhythmic_history())
        waits = [
            await refused_in(mesh.orchestrator.Recommend(history, timeout=5)) for _ in range(10)
        ] + [
            await refused_in(mesh.orchestrator.ProcessSeed(seed_request(), timeout=5))
            for _ in range(10)
        ]
        assert await mesh.health_of("") == SERVING
        outcomes = await asyncio.gather(*tasks)
        assert all(o.code == grpc.StatusCode.OK and o.offers for o in outcomes), outcomes
        assert (await mesh.orchestrator.Recommend(history, timeout=5)).offers, "room again"
    finally:
        await stop_mesh(mesh)
    assert percentile(waits, 99) < 0.05
    record_figures(
        "overload-fast",
        {
            "limit": limit,
            "refused": len(waits),
            "refused_p50_ms": millis(percentile(waits, 50)),
            "refused_p99_ms": millis(percentile(waits, 99)),
        },
    )


async def health_latencies(channel: grpc.aio.Channel, stop: asyncio.Event) -> list[float]:
    """Health checks every 50 ms until `stop`; each one's latency (SERVING required)."""
    stub = health_pb2_grpc.HealthStub(channel)
    latencies = []
    while not stop.is_set():
        started = time.monotonic()
        response = await stub.Check(health_pb2.HealthCheckRequest(), timeout=2)
        assert response.status == SERVING
        latencies.append(time.monotonic() - started)
        await asyncio.sleep(0.05)
    return latencies


async def read_slowly(call: grpc.aio.UnaryStreamCall) -> None:  # type: ignore[type-arg]
    """One event a second, until cancelled or the stream ends."""
    async for _ in call:
        await asyncio.sleep(1)


@pytest.mark.chaos
@pytest.mark.timeout(300)
async def test_slow_reading_clients_keep_memory_bounded(tmp_path: Path) -> None:
    limit, clients = 64, 400
    server = start_server(
        tmp_path,
        unused_port(),
        PANTREE_MAX_CONCURRENT_RPCS=str(limit),
        PANTREE_SIMULATION_MONTH_DELAY_MS="500",  # a stream lasts 12 s: slots stay taken
        PANTREE_SHUTDOWN_GRACE_S="1",
    )
    pid = server.process.pid
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            stub = OrchestratorServiceStub(channel)
            await follow_stream(stub, seed_request(months=2), 30)  # warm: catalog, caches
            before = sample_process(pid)
            stop = asyncio.Event()
            health = asyncio.create_task(health_latencies(channel, stop))
            calls = [stub.ProcessSeed(seed_request(months=24, random_seed=i), timeout=60)
                     for i in range(clients)]  # fmt: skip
            started = time.monotonic()
            firsts = await asyncio.gather(*(call.read() for call in calls), return_exceptions=True)
            answered_s = time.monotonic() - started
            refused = [f for f in firsts if isinstance(f, grpc.aio.AioRpcError)]
            readers = [asyncio.create_task(read_slowly(c)) for c in calls if not c.done()]
            samples = []
            for _ in range(24):
                samples.append(sample_process(pid))
                await asyncio.sleep(0.25)
            stop.set()
            latencies = await health
            for reader in readers:
                reader.cancel()
            for call in calls:
                call.cancel()
            await asyncio.sleep(1)
            after = sample_process(pid)
    finally:
        assert server.stop() == 0
    assert {f.code() for f in refused} == {grpc.StatusCode.RESOURCE_EXHAUSTED}
    assert len(refused) == clients - limit
    peak = max(s.rss_bytes for s in samples)
    record_figures(
        "overload-slow-readers",
        {
            "limit": limit,
            "clients": clients,
            "refused": len(refused),
            "first_event_or_refusal_all_s": round(answered_s, 3),
            "rss_before_mib": round(before.rss_bytes / 2**20, 1),
            "rss_peak_mib": round(peak / 2**20, 1),
            "rss_after_mib": round(after.rss_bytes / 2**20, 1),
            "health_checks": len(latencies),
            "health_p50_ms": millis(percentile(latencies, 50)),
            "health_p99_ms": millis(percentile(latencies, 99)),
        },
    )
    assert peak - before.rss_bytes < 100 * 2**20
