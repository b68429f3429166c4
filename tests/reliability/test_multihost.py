"""Fault 7: steps on hosts of their own (network namespaces joined by veth pairs and a bridge,
made and torn down by the test) and one link cut mid-stream: no reset arrives, the packets just
vanish. The guarantees of fault 1 hold across that hop: every stream ends with a status a caller
can act on within 1 s of the cut reaching it (of the cut itself for the step streaming the
months; of the stream's last event for a step needed later), no handler is left, and once the
link is back every new stream succeeds. What notices the silence: the client keepalive and
TCP_USER_TIMEOUT (pantree_common/client.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import grpc
import pytest
from pantree.orchestrator.v1.orchestrator_service_pb2_grpc import OrchestratorServiceStub

from tests.e2e.conftest import STEPS, SplitMesh, start_split_mesh
from tests.reliability import netns
from tests.reliability.harness import (
    all_new_streams_succeed,
    assert_every_stream_ended_defined,
    fault_figures,
    fault_mid_stream,
    millis,
    months_for,
    record_figures,
    step_apart,
    until_a_stream_succeeds,
)

MONTH_DELAY = {"PANTREE_SIMULATION_MONTH_DELAY_MS": "100"}


@pytest.fixture(scope="module")
def network() -> Iterator[netns.Network]:
    if reason := netns.refusal():
        pytest.skip(reason)
    with netns.network([*STEPS, "orchestrator"]) as net:
        yield net


async def test_a_cut_link_to_the_simulation_ends_every_stream_within_a_second(
    network: netns.Network, tmp_path: Path
) -> None:
    step = "simulation"
    async with step_apart(
        tmp_path, step, network.hosts[step], network.launcher(step), **MONTH_DELAY
    ) as apart:
        try:
            outcomes, cut_at = await fault_mid_stream(
                apart.mesh.orchestrator, months_for(step), partial(network.cut, step)
            )
            assert await apart.mesh.server.drain.wait_idle(1.0), "a handler outlived the cut"
            idle_ms = millis(time.monotonic() - cut_at)
        finally:
            network.mend(step)
        assert_every_stream_ended_defined(outcomes, cut_at)
        recovered_ms = millis(await until_a_stream_succeeds(apart.mesh.orchestrator))
        await all_new_streams_succeed(apart.mesh.orchestrator)
    record_figures(
        "cut-simulation-fast",
        fault_figures(outcomes, cut_at)
        | {"handlers_idle_after_ms": idle_ms, "recovered_after_mend_ms": recovered_ms},
    )


@pytest.fixture(scope="module")
def hosted_mesh(
    network: netns.Network, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SplitMesh]:
    mesh = start_split_mesh(
        tmp_path_factory.mktemp("hosted"),
        hosts=network.hosts,
        launchers={host: network.launcher(host) for host in network.hosts},
        **MONTH_DELAY,
    )
    yield mesh
    started = time.monotonic()
    assert mesh.stop() == [0] * 6
    assert time.monotonic() - started < 5
    assert "grace period over" not in mesh.orchestrator.log_path.read_text()


@pytest.mark.chaos
@pytest.mark.timeout(300)
@pytest.mark.parametrize("step", STEPS)
async def test_a_cut_link_to_any_step_across_hosts(
    network: netns.Network, hosted_mesh: SplitMesh, step: str
) -> None:
    async with grpc.aio.insecure_channel(hosted_mesh.orchestrator.address) as channel:
        stub = OrchestratorServiceStub(channel)
        try:
            # Later steps are cut 300 ms before the streams need them: the link is dead by then.
            outcomes, cut_at = await fault_mid_stream(
                stub, months_for(step, lead_months=3), partial(network.cut, step)
            )
        finally:
            network.mend(step)
        assert_every_stream_ended_defined(outcomes, cut_at, once_reached=True)
        recovered_ms = millis(await until_a_stream_succeeds(stub))
        await all_new_streams_succeed(stub)
    record_figures(
        f"cut-{step}", fault_figures(outcomes, cut_at) | {"recovered_after_mend_ms": recovered_ms}
    )
