"""Fault 1: a step SIGKILLed while 30 ProcessSeed streams are past their third month. Every
stream ends with a status a caller can act on (or completes, degraded) within 1 s of the kill,
no handler is left running, and once the step is back every new stream succeeds."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from pantree.orchestrator.v1.orchestrator_service_pb2_grpc import OrchestratorServiceStub

from tests.e2e.conftest import STEPS, SplitMesh, start_split_mesh
from tests.reliability.harness import (
    all_new_streams_succeed,
    assert_every_stream_ended_defined,
    fault_figures,
    fault_mid_stream,
    follow_stream,
    millis,
    months_for,
    record_figures,
    step_apart,
    until_a_stream_succeeds,
)
from tests.service.conftest import seed_request

MONTH_DELAY = {"PANTREE_SIMULATION_MONTH_DELAY_MS": "100"}


async def test_killing_the_simulation_mid_stream_ends_every_stream_within_a_second(
    tmp_path: Path,
) -> None:
    async with step_apart(tmp_path, "simulation", **MONTH_DELAY) as apart:
        outcomes, killed_at = await fault_mid_stream(
            apart.mesh.orchestrator, months_for("simulation"), apart.kill
        )
        assert await apart.mesh.server.drain.wait_idle(1.0), "a handler outlived the kill by 1 s"
        idle_ms = millis(time.monotonic() - killed_at)
        assert_every_stream_ended_defined(outcomes, killed_at)
        down = await follow_stream(apart.mesh.orchestrator, seed_request(months=3), 5)
        assert down.code == grpc.StatusCode.UNAVAILABLE, down
        apart.restart()
        recovered_ms = millis(await until_a_stream_succeeds(apart.mesh.orchestrator))
        await all_new_streams_succeed(apart.mesh.orchestrator)
    record_figures(
        "kill-simulation-fast",
        fault_figures(outcomes, killed_at)
        | {"handlers_idle_after_ms": idle_ms, "recovered_after_serving_ms": recovered_ms},
    )


@pytest.fixture(scope="module")
def split_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SplitMesh]:
    mesh = start_split_mesh(tmp_path_factory.mktemp("split"), **MONTH_DELAY)
    yield mesh
    # A handler still running would hold the orchestrator's drain until the grace period ends.
    started = time.monotonic()
    codes = mesh.stop()
    assert codes == [0] * len(codes)
    assert time.monotonic() - started < 5
    assert "grace period over" not in mesh.orchestrator.log_path.read_text()


@pytest.mark.chaos
@pytest.mark.timeout(300)
@pytest.mark.parametrize("step", STEPS)
async def test_killing_any_step_of_a_split_mesh(split_mesh: SplitMesh, step: str) -> None:
    async with grpc.aio.insecure_channel(split_mesh.orchestrator.address) as channel:
        stub = OrchestratorServiceStub(channel)

        def kill() -> None:
            split_mesh.steps[step].process.kill()
            split_mesh.steps[step].process.wait()

        outcomes, killed_at = await fault_mid_stream(stub, months_for(step), kill)
        assert_every_stream_ended_defined(outcomes, killed_at)
        started = time.monotonic()
        await asyncio.to_thread(split_mesh.restart, step)
        restart_ms = millis(time.monotonic() - started)
        recovered_ms = millis(await until_a_stream_succeeds(stub))
        await all_new_streams_succeed(stub)
    record_figures(
        f"kill-{step}",
        fault_figures(outcomes, killed_at)
        | {"restart_to_serving_ms": restart_ms, "recovered_after_serving_ms": recovered_ms},
    )


@pytest.mark.chaos
@pytest.mark.timeout(120)
async def test_a_stalled_step_is_waited_for_not_given_up(split_mesh: SplitMesh) -> None:
    """The short client keepalive (pantree_common/client.py) gives up on a peer whose kernel
    stops acknowledging, not on one that is merely slow: a step frozen for 3 s (SIGSTOP, its
    kernel still acknowledging) finishes every stream once it runs again."""
    step = split_mesh.steps["simulation"].process
    async with grpc.aio.insecure_channel(split_mesh.orchestrator.address) as channel:
        stub = OrchestratorServiceStub(channel)

        def freeze() -> None:
            step.send_signal(signal.SIGSTOP)
            asyncio.get_running_loop().call_later(3, step.send_signal, signal.SIGCONT)

        outcomes, _ = await fault_mid_stream(stub, months_for("simulation"), freeze)
    assert all(o.code == grpc.StatusCode.OK and o.offers for o in outcomes), outcomes
