"""What the reliability cases share: concurrent streams with their outcomes, process samples
and the figures each case records for docs/RELIABILITY.md."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import signal
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import grpc
from pantree.orchestrator.v1 import orchestrator_service_pb2 as pb
from pantree.orchestrator.v1.orchestrator_service_pb2_grpc import OrchestratorServiceStub

from services.mesh import STEPS, create_mesh_server
from tests.conftest import unused_port
from tests.e2e.conftest import ServerProcess, start_server
from tests.service.conftest import (
    TODAY,
    Mesh,
    mesh_config,
    seed_request,
    start_mesh,
    stop_mesh,
)

FIGURES_DIR = Path(".artifacts/reliability")
# Status codes a caller can act on; UNKNOWN and INTERNAL mean a bug.
DEFINED = frozenset(grpc.StatusCode) - {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL}


@dataclass
class StreamOutcome:
    """How one ProcessSeed stream ended, as its caller saw it."""

    code: grpc.StatusCode = grpc.StatusCode.OK
    details: str = ""
    months: int = 0
    kinds: list[str] = field(default_factory=list)
    started_at: float = field(default_factory=time.monotonic)
    last_event_at: float = 0.0
    """time.monotonic() when the last event arrived."""
    ended_at: float = 0.0
    """time.monotonic() when the last event or the status arrived."""

    def since(self, fault_at: float) -> float:
        """Seconds from the fault reaching this stream to its end: from the fault, or from the
        stream's last event if it came later (the orchestrator moved on, to a step it had not
        needed yet when the fault came)."""
        return self.ended_at - max(fault_at, self.last_event_at)

    @property
    def offers(self) -> bool:
        return "recommendations" in self.kinds and self.kinds[-1] == "summary"


async def follow_stream(
    stub: OrchestratorServiceStub,
    request: pb.ProcessSeedRequest,
    deadline_s: float,
    months_seen: Callable[[int], None] = lambda _: None,
) -> StreamOutcome:
    """Read a ProcessSeed stream to its end; `months_seen` hears the count after each month."""
    outcome = StreamOutcome()
    try:
        async for event in stub.ProcessSeed(request, timeout=deadline_s):
            kind = str(event.WhichOneof("event"))
            outcome.kinds.append(kind)
            outcome.last_event_at = time.monotonic()
            if kind == "month":
                outcome.months += 1
                months_seen(outcome.months)
    except grpc.aio.AioRpcError as error:
        outcome.code, outcome.details = error.code(), error.details() or ""
    outcome.ended_at = time.monotonic()
    return outcome


async def streams_past_month(
    stub: OrchestratorServiceStub,
    requests: Sequence[pb.ProcessSeedRequest],
    month: int,
    deadline_s: float,
) -> tuple[list[asyncio.Task[StreamOutcome]], asyncio.Event]:
    """Start one stream per request; the event is set once every stream has received `month`
    months (or ended)."""
    reached = asyncio.Event()
    waiting = set(range(len(requests)))

    def seen(index: int) -> Callable[[int], None]:
        def check(months: int) -> None:
            if months >= month:
                waiting.discard(index)
                if not waiting:
                    reached.set()

        return check

    async def run(index: int, request: pb.ProcessSeedRequest) -> StreamOutcome:
        try:
            return await follow_stream(stub, request, deadline_s, seen(index))
        finally:
            seen(index)(month)

    tasks = [asyncio.create_task(run(i, r)) for i, r in enumerate(requests)]
    return tasks, reached


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), nearest rank; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def millis(seconds: float) -> float:
    return round(seconds * 1000, 1)


@dataclass(frozen=True)
class ProcessSample:
    """One look at a process from /proc."""

    at: float
    rss_bytes: int
    threads: int
    fds: int
    cpu_s: float


def sample_process(pid: int) -> ProcessSample:
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    stat = Path(f"/proc/{pid}/stat").read_text()
    utime, stime = stat[stat.rindex(")") + 2 :].split()[11:13]
    ticks = os.sysconf("SC_CLK_TCK")
    return ProcessSample(
        at=time.monotonic(),
        rss_bytes=int(fields["VmRSS"].split()[0]) * 1024,
        threads=int(fields["Threads"]),
        fds=len(os.listdir(f"/proc/{pid}/fd")),
        cpu_s=(int(utime) + int(stime)) / ticks,
    )


def record_figures(case: str, figures: dict[str, object]) -> None:
    """Keep a case's measurements in .artifacts/reliability/<case>.json for the report."""
    FIGURES_DIR.mkdir(parents=True, exist_ok=True)
    plain = {k: asdict(v) if hasattr(v, "__dataclass_fields__") else v for k, v in figures.items()}
    path = FIGURES_DIR / f"{case}.json"
    path.write_text(json.dumps(plain, indent=1, default=str) + "\n")


STREAMS = 30
STREAM_TIMEOUT_S = 30.0
FAULT_AFTER_MONTH = 3


def months_for(step: str, lead_months: int = 1) -> int:
    """Stream length that keeps `step` in use when the fault comes after month 3: the
    simulation streams for a while yet; the later steps are needed `lead_months` x 100 ms
    later (with PANTREE_SIMULATION_MONTH_DELAY_MS=100)."""
    return 12 if step == "simulation" else FAULT_AFTER_MONTH + lead_months


async def fault_mid_stream(
    stub: OrchestratorServiceStub, months: int, inject: Callable[[], None], streams: int = STREAMS
) -> tuple[list[StreamOutcome], float]:
    """Start `streams` ProcessSeed streams, call `inject` once every one has received month 3,
    and wait for them all; returns their outcomes and when the fault was injected."""
    requests = [seed_request(months=months, random_seed=i) for i in range(streams)]
    tasks, reached = await streams_past_month(stub, requests, FAULT_AFTER_MONTH, STREAM_TIMEOUT_S)
    await asyncio.wait_for(reached.wait(), STREAM_TIMEOUT_S)
    injected_at = time.monotonic()
    inject()
    return list(await asyncio.gather(*tasks)), injected_at


def fault_figures(outcomes: Sequence[StreamOutcome], injected_at: float) -> dict[str, object]:
    """Status codes and how long after the fault each stream ended."""
    ended = [o.ended_at - injected_at for o in outcomes]
    codes: dict[str, int] = {}
    for outcome in outcomes:
        codes[outcome.code.name] = codes.get(outcome.code.name, 0) + 1
    return {
        "streams": len(outcomes),
        "codes": codes,
        "completed_with_offers": sum(o.code == grpc.StatusCode.OK and o.offers for o in outcomes),
        "ended_after_fault_p50_ms": millis(percentile(ended, 50)),
        "ended_after_fault_max_ms": millis(max(ended)),
        "ended_after_reaching_stream_max_ms": millis(max(o.since(injected_at) for o in outcomes)),
    }


def assert_every_stream_ended_defined(
    outcomes: Sequence[StreamOutcome],
    injected_at: float,
    within_s: float = 1.0,
    once_reached: bool = False,
) -> None:
    """Each stream either completed (offers and summary) or ended with a status a caller can
    act on, within `within_s` of the fault (`once_reached`: of the fault reaching it, see
    StreamOutcome.since)."""
    for outcome in outcomes:
        assert outcome.code in DEFINED, outcome
        assert outcome.code != grpc.StatusCode.OK or outcome.offers, outcome
        took = outcome.since(injected_at) if once_reached else outcome.ended_at - injected_at
        assert took <= within_s, (took, outcome)


async def until_a_stream_succeeds(stub: OrchestratorServiceStub, within_s: float = 30) -> float:
    """Seconds until a fresh stream succeeds again (one stream at a time): after a step came
    back, the orchestrator's channel first waits out its reconnect backoff (at most 2 s,
    pantree_common/client.py) and fails calls fast meanwhile."""
    started = time.monotonic()
    while True:
        outcome = await follow_stream(stub, seed_request(months=1), STREAM_TIMEOUT_S)
        if outcome.code == grpc.StatusCode.OK:
            return time.monotonic() - started
        assert outcome.code in DEFINED, outcome
        assert time.monotonic() - started < within_s, f"not recovered: {outcome}"
        await asyncio.sleep(0.05)


async def all_new_streams_succeed(stub: OrchestratorServiceStub, streams: int = STREAMS) -> None:
    """`streams` fresh streams, all at once, every one complete."""
    requests = [seed_request(months=FAULT_AFTER_MONTH, random_seed=100 + i) for i in range(streams)]
    outcomes = await asyncio.gather(
        *(follow_stream(stub, request, STREAM_TIMEOUT_S) for request in requests)
    )
    failed = [o for o in outcomes if o.code != grpc.StatusCode.OK or not o.offers]
    assert not failed, f"{len(failed)} of {streams} new streams failed: {failed[0]}"


@dataclass
class StepApart:
    """One step in a process of its own (on `host`, run through `launcher`), the rest of the
    mesh in this process dialling it."""

    mesh: Mesh
    process: ServerProcess
    start: Callable[[], ServerProcess]

    def kill(self) -> None:
        self.process.process.send_signal(signal.SIGKILL)
        self.process.process.wait()

    def restart(self) -> None:
        self.process = self.start()


@contextlib.asynccontextmanager
async def step_apart(
    tmp_path: Path,
    step: str,
    host: str = "127.0.0.1",
    launcher: Sequence[str] = (),
    **env: str,
) -> AsyncIterator[StepApart]:
    port = unused_port()

    def start() -> ServerProcess:
        return start_server(tmp_path / step, port, step, host=host, launcher=launcher, **env)

    process = start()
    config = mesh_config(tmp_path, **{f"{step.upper()}_SERVICE_ADDR": process.address})
    others = [s for s in STEPS if s != step]
    apart = StepApart(
        await start_mesh(tmp_path, server=create_mesh_server(others, config, lambda: TODAY)),
        process,
        start,
    )
    try:
        yield apart
    finally:
        await stop_mesh(apart.mesh)
        apart.process.process.kill()
        apart.process.process.wait()
