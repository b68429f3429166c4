"""How close Recommend and ProcessSeed come to the gRPC ceiling of the same server stack.

Each server configuration (--processes 1 2, and with --network-hops one more run where the
orchestrator dials its own port instead of calling its steps in-process) is a child process
running `services.mesh.serve_mesh`, the code behind `pantree serve all --processes N`, with a
no-op unary method added behind the same interceptors. Against each one, in one run:
  * the Python client (grpc.aio, pre-serialised requests, raw-bytes responses, spread over
    --connections connections) and h2load (Debian nghttp2-client, C, when installed; it sends
    the same gRPC frames over HTTP/2): the no-op and Recommend at each --in-flight;
  * ProcessSeed (Python client, 8 in flight): time to the first month on the wire, the whole
    stream, streams per second.
Recommend carries a 150-event history over the catalog's 20 most rebought products and is
scored by a trained model (--model; `pantree train --dataset completejourney` writes it on
first use). ProcessSeed asks for 6 months from 20 seed items named as catalog products. The
data directory (--data-dir) keeps the catalog and its embeddings between runs. --profile samples
the single-process server with py-spy during Recommend and ProcessSeed (bench/pyspy.py).

    python bench/grpc_ceiling.py [--seconds 10] [--in-flight 8 64] [--processes 1 2]
        [--network-hops] [--profile] [--write docs/BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "pantree_common" / "generated"), str(ROOT / "bench")]

import grpc  # noqa: E402
import pyspy  # noqa: E402
import report  # noqa: E402
from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402
from pantree.domain.v1 import history_pb2, offer_pb2, product_pb2  # noqa: E402
from pantree.orchestrator.v1 import orchestrator_service_pb2 as pb  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from pantree_common import config as config_loader  # noqa: E402
from pantree_common import logging as pantree_logging  # noqa: E402
from pantree_common.domain import catalog  # noqa: E402
from pantree_common.domain.dates import today_epoch_day  # noqa: E402
from pantree_common.server import PantreeServer  # noqa: E402
from services.mesh import STEPS, MeshConfig, serve_mesh  # noqa: E402
from services.recommendation.features import columns_from_analysis, feature_matrix  # noqa: E402
from services.recommendation.model import SubscriptionModel, load  # noqa: E402

NOOP_METHOD = "/pantree.bench.v1.NoopService/Ping"
PID_METHOD = "/pantree.bench.v1.NoopService/Pid"
RECOMMEND_METHOD = "/pantree.orchestrator.v1.OrchestratorService/Recommend"
PROCESS_SEED_METHOD = "/pantree.orchestrator.v1.OrchestratorService/ProcessSeed"
SERVING = health_pb2.HealthCheckResponse.SERVING
DEFAULT_WORK = ROOT / ".artifacts" / "bench"
H2LOAD = shutil.which("h2load")
SEED_IN_FLIGHT = 8
H2LOAD_CONNECTIONS = 16
"""h2load's connections at most (one per call in flight below that): the kernel spreads them
over the server processes at random, so many keep the shares close."""


def serve(port: int) -> None:
    """Child process: the all-in-one mesh (PANTREE_PROCESSES of them) plus a no-op method
    behind the same interceptors."""

    async def noop(request: bytes, context: object) -> bytes:
        return b""

    async def pid(request: bytes, context: object) -> bytes:
        return str(os.getpid()).encode()

    def add_noop(server: PantreeServer) -> None:
        handlers = {
            "Ping": grpc.unary_unary_rpc_method_handler(noop),
            "Pid": grpc.unary_unary_rpc_method_handler(pid),
        }
        server.server.add_generic_rpc_handlers(
            [grpc.method_handlers_generic_handler("pantree.bench.v1.NoopService", handlers)]
        )

    overrides = {"PORT": str(port), "PANTREE_HOST": "127.0.0.1", "PANTREE_METRICS_PORT": "0"}
    config = config_loader.load(MeshConfig, {**os.environ, **overrides})
    pantree_logging.configure(config.logging.level)
    sys.exit(serve_mesh(STEPS, config, add_noop))


def history(events: int = 150) -> history_pb2.PurchaseHistory:
    """A 150-event history over the catalog's 20 most rebought products, weekly to monthly."""
    products = list(catalog.products()[:20])
    end = today_epoch_day()
    rows: list[tuple[int, int]] = []
    for i in range(events):
        product = i % len(products)
        period = 7 + 3 * (product % 8)
        rows.append((end - (i // len(products)) * period - product % 5, product))
    rows.sort()
    return history_pb2.PurchaseHistory(
        customer_id="bench-customer",
        products=[p.to_proto() for p in products],
        product_indexes=[r[1] for r in rows],
        purchase_epoch_days=[r[0] for r in rows],
        quantities=[1.0] * len(rows),
    )


def seed() -> pb.ProcessSeedRequest:
    names = list(dict.fromkeys(p.name for p in catalog.products()))[::4][:20]  # distinct names
    return pb.ProcessSeedRequest(
        archetype="busy_family",
        months=6,
        random_seed=11,
        seed_items=[product_pb2.SeedItem(name=n) for n in names],
    )


@dataclass
class Result:
    workload: str
    client: str
    in_flight: int
    seconds: float
    latencies_ms: list[float]
    first_month_ms: list[float] = field(default_factory=list)

    @property
    def rps(self) -> float:
        return len(self.latencies_ms) / self.seconds

    def p(self, q: float, values: list[float] | None = None) -> float:
        ordered = sorted(self.latencies_ms if values is None else values)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


@dataclass
class Workload:
    name: str
    method: str
    payload: bytes
    streaming: bool = False


async def drive(
    channels: Sequence[grpc.aio.Channel],
    work: Workload,
    seconds: float,
    in_flight: int,
    first_month: int = -1,
) -> Result:
    """`in_flight` loops calling back to back for `seconds`, spread over `channels`; for a stream
    also the time to message number `first_month`."""
    latencies: list[float] = []
    firsts: list[float] = []
    stop_at = time.perf_counter() + seconds

    async def worker(channel: grpc.aio.Channel) -> None:
        call = (channel.unary_stream if work.streaming else channel.unary_unary)(work.method)
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            if work.streaming:
                index = 0
                async for _ in call(work.payload, timeout=30):
                    if index == first_month:
                        firsts.append((time.perf_counter() - started) * 1000)
                    index += 1
            else:
                await call(work.payload, timeout=30)
            latencies.append((time.perf_counter() - started) * 1000)

    began = time.perf_counter()
    await asyncio.gather(*(worker(channels[i % len(channels)]) for i in range(in_flight)))
    elapsed = time.perf_counter() - began
    return Result(work.name, "Python", in_flight, elapsed, latencies, firsts)


@contextlib.asynccontextmanager
async def connections(address: str, count: int, processes: int) -> Any:
    """`count` channels with a connection each (not shared through gRPC's global subchannel
    pool), spread evenly over the server's `processes` as a load balancer would (rounded up to
    a multiple of `processes`): the kernel hands each new connection to a process at random, so
    connections are opened until every process has its share, and the extra ones closed."""
    options = [("grpc.use_local_subchannel_pool", 1)]
    kept: dict[bytes, list[grpc.aio.Channel]] = {}
    share = -(-count // processes)
    try:
        for _ in range(100 * count):
            if len(kept) == processes and all(len(c) == share for c in kept.values()):
                break
            channel = grpc.aio.insecure_channel(address, options=options)
            # One process needs no asking (a --baseline server has no Pid method).
            owner = await channel.unary_unary(PID_METHOD)(b"", timeout=30) if processes > 1 else b""
            if len(kept.setdefault(owner, [])) < share:
                kept[owner].append(channel)
            else:
                await channel.close()
        else:
            raise RuntimeError(f"could not spread {count} connections over {processes} processes")
        yield [channel for channels in zip(*kept.values(), strict=True) for channel in channels]
    finally:
        for channels in kept.values():
            for channel in channels:
                await channel.close()


def h2load(
    address: str, work: Workload, seconds: float, in_flight: int, conns: int, answer_bytes: int
) -> Result:
    """The same calls from h2load: a gRPC frame (flag, length, message) as the request body;
    per-request times from its log file. h2load sees HTTP statuses only, not gRPC's: that every
    call got its answer is checked from the response data per call (`answer_bytes` plus the
    5-byte frame header), since an error carries none."""
    per_connection = max(1, in_flight // conns)
    with tempfile.TemporaryDirectory() as scratch:
        body, log = Path(scratch) / "body", Path(scratch) / "log"
        body.write_bytes(b"\0" + len(work.payload).to_bytes(4, "big") + work.payload)
        assert H2LOAD
        command = [
            H2LOAD,
            "-D",
            f"{round(seconds * 1000)}ms",
            "--warm-up-time",
            "1s",
            "-c",
            str(conns),
        ]
        command += ["-m", str(per_connection), "-d", str(body), "--log-file", str(log)]
        command += ["-H", "content-type: application/grpc", "-H", "te: trailers"]
        done = subprocess.run(
            [*command, f"http://{address}{work.method}"], check=True, capture_output=True, text=True
        )
        rows = [line.split("\t") for line in log.read_text().splitlines() if line]
    data = re.search(r"\((\d+)\) data", done.stdout)
    requests = re.search(r"requests: \d+ total, \d+ started, (\d+) done", done.stdout)
    per_call = int(data.group(1)) / max(1, int(requests.group(1))) if data and requests else 0
    if not rows or any(row[1] != "200" for row in rows) or per_call < answer_bytes + 5:
        raise RuntimeError(
            f"h2load: not every call was answered ({per_call:.0f} B each):\n{done.stdout}"
        )
    latencies = [int(row[2]) / 1000 for row in rows]
    span = (max(int(r[0]) + int(r[2]) for r in rows) - min(int(r[0]) for r in rows)) / 1e6
    return Result(work.name, "h2load", per_connection * conns, span, latencies)


@dataclass
class Checked:
    """What one call of each workload answered, checked before timing anything."""

    offers: int
    scored_by: str
    response_bytes: int
    analysis: Any
    stream_messages: int
    first_month: int


async def check(address: str, recommend: Workload, stream: Workload) -> Checked:
    async with grpc.aio.insecure_channel(address) as channel:
        raw = await channel.unary_unary(recommend.method)(recommend.payload, timeout=30)
        answer = pb.RecommendResponse.FromString(raw)
        request = pb.RecommendRequest.FromString(recommend.payload)
        request.include_analysis = True
        analysed = await channel.unary_unary(
            RECOMMEND_METHOD,
            request_serializer=pb.RecommendRequest.SerializeToString,
            response_deserializer=pb.RecommendResponse.FromString,
        )(request, timeout=30)
        events = [
            pb.ProcessSeedResponse.FromString(message)
            async for message in channel.unary_stream(stream.method)(stream.payload, timeout=30)
        ]
    months = [i for i, event in enumerate(events) if event.HasField("month")]
    if not answer.offers or len(months) != 6:
        raise RuntimeError(f"unexpected answers: {len(answer.offers)} offers, {months} months")
    return Checked(
        offers=len(answer.offers),
        scored_by=offer_pb2.ScoringPath.Name(answer.scored_by),
        response_bytes=len(raw),
        analysis=analysed.analysis,
        stream_messages=len(events),
        first_month=months[0],
    )


async def measure(
    address: str,
    args: argparse.Namespace,
    workloads: dict[str, Workload],
    checked: Checked,
    processes: int,
) -> list[Result]:
    results: list[Result] = []
    async with connections(address, args.connections, processes) as channels:
        for work in workloads.values():  # warm every path once
            await drive(channels, work, min(1.0, args.seconds), max(args.in_flight))
        for in_flight in args.in_flight:
            for name in ("noop", "recommend"):
                results.append(await drive(channels, workloads[name], args.seconds, in_flight))
        stream = workloads["seed"]
        results.append(
            await drive(channels, stream, args.seconds, SEED_IN_FLIGHT, checked.first_month)
        )
    if H2LOAD and not args.no_h2load:
        for in_flight in args.in_flight:
            for name in ("noop", "recommend"):
                work = workloads[name]
                conns = min(in_flight, H2LOAD_CONNECTIONS)
                size = checked.response_bytes if name == "recommend" else 0
                results.append(h2load(address, work, args.seconds, in_flight, conns, size))
    return results


@contextlib.contextmanager
def server(
    args: argparse.Namespace, processes: int, in_process: bool, tree: Path = ROOT
) -> Iterator[tuple[str, int]]:
    """A bench server child on a free port, SERVING; yields its address and pid. `tree`: the
    source tree whose code serves (its own bench/grpc_ceiling.py --serve, its packages first on
    the path), for a before/after in one run."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {
        **os.environ,
        "PANTREE_DATA_DIR": str(args.data_dir),
        "PANTREE_MODEL_PATH": args.model,
        "PANTREE_PROCESSES": str(processes),
        "PANTREE_IN_PROCESS_CALLS": str(in_process).lower(),
        "PANTREE_LOG_LEVEL": "WARNING",
        "PANTREE_CATALOG": args.catalog,
        **({"PANTREE_EMBEDDER": args.embedder} if args.embedder else {}),
        "PYTHONPATH": os.pathsep.join([str(tree), str(tree / "pantree_common" / "generated")]),
    }
    script = str(tree / "bench" / "grpc_ceiling.py")
    child = subprocess.Popen([sys.executable, script, "--serve", str(port)], env=env, cwd=tree)
    address = f"127.0.0.1:{port}"
    try:
        wait_serving(address, child)
        yield address, child.pid
    finally:
        child.send_signal(signal.SIGTERM)
        child.wait(timeout=60)


def wait_serving(address: str, child: subprocess.Popen[bytes], timeout_s: float = 900) -> None:
    """Block until the server's overall health is SERVING (the first start embeds the catalog)."""
    deadline = time.monotonic() + timeout_s
    with grpc.insecure_channel(address) as channel:
        health_check = health_pb2_grpc.HealthStub(channel).Check
        while time.monotonic() < deadline and child.poll() is None:
            with contextlib.suppress(grpc.RpcError):
                if health_check(health_pb2.HealthCheckRequest(), timeout=1).status == SERVING:
                    return
            time.sleep(0.2)
    raise TimeoutError(f"{address} did not become SERVING (exit code {child.poll()})")


def scoring_times(model: SubscriptionModel, checked: Checked, history_: Any) -> str:
    """The model's share of one Recommend: its candidates scored by the flattened trees and by
    scikit-learn (one OpenMP thread, and its default of one per core), in this process."""
    products = {p.product_id: p for p in history_.products}
    matrix = feature_matrix(
        columns_from_analysis(checked.analysis, products, model.priors), model.priors
    )

    def per_call_us(score: Any, repeats: int = 200) -> float:
        score()
        started = time.perf_counter()
        for _ in range(repeats):
            score()
        return (time.perf_counter() - started) / repeats * 1e6

    def sklearn() -> None:
        model.classifier.predict_proba(matrix)
        model.interval_regressor.predict(matrix)

    assert model.forest is not None
    forest = per_call_us(lambda: model.forest.predict(matrix))  # type: ignore[union-attr]
    default = per_call_us(sklearn, 20)
    with threadpool_limits(1, "openmp"):
        single = per_call_us(sklearn)
    return (
        f"Scoring the {matrix.shape[0]} candidates of this history (both ensembles, "
        f"{len(model.classifier._predictors) + len(model.interval_regressor._predictors)} "
        f"trees), in the client process: flattened trees {forest:,.0f} µs; scikit-learn "
        f"{single:,.0f} µs on one OpenMP thread, {default:,.0f} µs with its default threads "
        "(what the server paid before).\n"
    )


def tables(label: str, results: list[Result], checked: Checked) -> str:
    noop = {(r.client, r.in_flight): r for r in results if r.workload == "no-op unary"}
    rows = [
        f"#### {label}",
        "",
        "| workload | client | in flight | calls | rps | p50 ms | p99 ms | rps / no-op | "
        "p99 / no-op p99 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if r.workload.startswith("ProcessSeed"):
            continue
        base = noop[(r.client, r.in_flight)]
        rows.append(
            f"| {r.workload} | {r.client} | {r.in_flight} | {len(r.latencies_ms):,} | "
            f"{r.rps:,.0f} | {r.p(0.5):.2f} | {r.p(0.99):.2f} | {r.rps / base.rps:.1%} | "
            f"{r.p(0.99) / base.p(0.99):.1f}x |"
        )
    for r in results:
        if r.workload.startswith("ProcessSeed"):
            rows += [
                "",
                "| ProcessSeed (6 months, 20 items) | in flight | streams | streams/s | "
                "first month p50 ms | first month p99 ms | stream p50 ms | stream p99 ms |",
                "|---|---|---|---|---|---|---|---|",
                f"| Python client | {r.in_flight} | {len(r.latencies_ms):,} | {r.rps:,.1f} | "
                f"{r.p(0.5, r.first_month_ms):.1f} | {r.p(0.99, r.first_month_ms):.1f} | "
                f"{r.p(0.5):.1f} | {r.p(0.99):.1f} |",
            ]
    rows += [
        "",
        f"Each Recommend answered {checked.offers} offers ({checked.response_bytes:,} bytes, "
        f"scored_by {checked.scored_by}); each ProcessSeed {checked.stream_messages} messages, "
        f"the first month being message {checked.first_month + 1}.",
    ]
    return "\n".join(rows) + "\n"


def targets(runs: dict[str, list[Result]], in_flight: int) -> str:
    """The issue's targets, at the first --in-flight (8 by default), Python client."""
    rows = ["| target | " + " | ".join(runs) + " |", "|---" * (len(runs) + 1) + "|"]

    def find(results: list[Result], workload: str, in_flight: int) -> Result:
        return next(
            r
            for r in results
            if r.workload.startswith(workload) and r.client == "Python" and r.in_flight == in_flight
        )

    lines = {
        f"Recommend ≥ 60% of no-op rps, {in_flight} in flight": [],
        f"Recommend p99 ≤ 3x no-op p99, {in_flight} in flight": [],
        "ProcessSeed first month p50 ≤ 20 ms": [],
        "ProcessSeed stream p50 ≤ 150 ms": [],
        "ProcessSeed ≥ 300 streams/s at 8 in flight": [],
    }
    for results in runs.values():
        noop, rec = find(results, "no-op", in_flight), find(results, "Recommend", in_flight)
        stream = find(results, "ProcessSeed", SEED_IN_FLIGHT)
        values = [
            (rec.rps / noop.rps, rec.rps / noop.rps >= 0.6, "{:.1%}"),
            (rec.p(0.99) / noop.p(0.99), rec.p(0.99) <= 3 * noop.p(0.99), "{:.1f}x"),
            (
                stream.p(0.5, stream.first_month_ms),
                stream.p(0.5, stream.first_month_ms) <= 20,
                "{:.1f} ms",
            ),
            (stream.p(0.5), stream.p(0.5) <= 150, "{:.0f} ms"),
            (stream.rps, stream.rps >= 300, "{:.0f}/s"),
        ]
        for line, (value, met, shape) in zip(lines.values(), values, strict=True):
            line.append(shape.format(value) + (" met" if met else " missed"))
    rows += [f"| {name} | " + " | ".join(cells) + " |" for name, cells in lines.items()]
    return "\n".join(rows) + "\n"


def prepare(args: argparse.Namespace) -> SubscriptionModel | None:
    """The catalog the server serves (its products make the history and the seed) and the
    model, trained on Complete Journey on first use."""
    catalog.use_catalog(catalog.open_catalog(args.catalog, str(args.data_dir)))
    if not args.model:
        return None
    if not Path(args.model, "model.skops").exists():
        pantree = str(Path(sys.executable).with_name("pantree"))
        train = [pantree, "train", "--dataset", "completejourney", "--output", args.model]
        subprocess.run(train, check=True)
    return load(args.model)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="per workload")
    parser.add_argument("--in-flight", type=int, nargs="+", default=[8, 64])
    parser.add_argument("--connections", type=int, default=4, help="client connections")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--network-hops",
        action="store_true",
        help="one more single-process run with PANTREE_IN_PROCESS_CALLS=false",
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        help="more runs served by the code of this source tree (for example `git archive` of "
        "an older commit): a before/after with the same client",
    )
    parser.add_argument(
        "--baseline-processes",
        type=int,
        nargs="+",
        default=[1],
        help="server processes of the --baseline runs (a tree older than the Pid method of "
        "`--serve` serves 1 only)",
    )
    parser.add_argument("--profile", action="store_true", help="py-spy the 1-process server")
    parser.add_argument("--profile-seconds", type=float, default=10.0)
    parser.add_argument("--no-h2load", action="store_true")
    parser.add_argument("--model", default=str(DEFAULT_WORK / "model-cj"), help="'': heuristic")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_WORK / "data")
    parser.add_argument("--catalog", default="completejourney")
    parser.add_argument("--embedder", default="", help="PANTREE_EMBEDDER (default: auto)")
    parser.add_argument("--write", type=Path, help="append the results to this Markdown file")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    model = prepare(args)
    history_ = history()
    workloads = {
        "noop": Workload("no-op unary", NOOP_METHOD, b""),
        "recommend": Workload(
            "Recommend (150 events)",
            RECOMMEND_METHOD,
            pb.RecommendRequest(history=history_).SerializeToString(),
        ),
        "seed": Workload("ProcessSeed", PROCESS_SEED_METHOD, seed().SerializeToString(), True),
    }
    configs = [(f"{n} process{'es' if n > 1 else ''}", n, True, ROOT) for n in args.processes]
    if args.network_hops:
        configs.append(("1 process, steps called over the network", 1, False, ROOT))
    if args.baseline:
        name = args.baseline.name
        configs += [
            (f"{n} process{'es' if n > 1 else ''}, the code of {name}", n, True, args.baseline)
            for n in args.baseline_processes
        ]
    command = report.shown_command([sys.executable, "bench/grpc_ceiling.py", *sys.argv[1:]])
    command = re.sub(r" --write \S+", "", command)
    body: list[str] = []
    runs: dict[str, list[Result]] = {}
    profiles: list[str] = []
    before = report.machine()
    for label, processes, in_process, tree in configs:
        with server(args, processes, in_process, tree) as (address, pid):
            checked = asyncio.run(check(address, workloads["recommend"], workloads["seed"]))
            runs[label] = asyncio.run(measure(address, args, workloads, checked, processes))
            body.append(tables(label, runs[label], checked))
            print(body[-1], flush=True)
            if args.profile and (processes, in_process, tree) == (1, True, ROOT):
                profiles += profile(address, pid, args, workloads, checked)
                print("\n".join(profiles), flush=True)
    text = "\n".join(body)
    text += "\n#### Against the targets (Python client)\n\n" + targets(runs, args.in_flight[0])
    if model is not None and model.forest is not None:
        text += "\n" + scoring_times(model, checked, history_)
    if profiles:
        text += "\n" + "\n".join(profiles)
    text = report.section("gRPC ceiling", command, text, before)
    print(text)
    if args.write:
        report.append(args.write, text)


def profile(
    address: str,
    pid: int,
    args: argparse.Namespace,
    workloads: dict[str, Workload],
    checked: Checked,
) -> list[str]:
    """py-spy tables of the server while the Python client drives Recommend, then ProcessSeed,
    at 8 in flight."""
    sections = []
    for name, first in (("recommend", -1), ("seed", checked.first_month)):
        work = workloads[name]
        with tempfile.TemporaryDirectory() as scratch:
            raw = Path(scratch) / "profile.txt"
            asyncio.run(sampled(address, pid, args, work, first, raw))
            sections.append(f"#### Profile: {work.name}, 8 in flight\n\n{pyspy.summarise(raw)}")
    return sections


async def sampled(
    address: str, pid: int, args: argparse.Namespace, work: Workload, first: int, raw: Path
) -> None:
    """Load for the profile's seconds plus a margin on each side; py-spy samples in between."""

    async def sample() -> None:
        await asyncio.sleep(1)
        await asyncio.to_thread(pyspy.record, pid, args.profile_seconds, raw)

    async with connections(address, args.connections, 1) as channels:
        await asyncio.gather(drive(channels, work, args.profile_seconds + 2, 8, first), sample())


if __name__ == "__main__":
    main()
