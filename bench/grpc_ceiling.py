"""How close Recommend and ProcessSeed come to the gRPC ceiling of the same server stack.

One run measures, with the same client (grpc.aio, pre-serialised requests, raw-bytes responses)
and the same number of calls in flight:
  * a no-op unary RPC registered on the Pantree server (same interceptor, same process),
  * Recommend with a 150-event history,
  * ProcessSeed (6 months, 20 seed items), whole stream and time to the first month.
The server is `pantree serve all` in a child process, so client and server each get a core.

    python bench/grpc_ceiling.py [--seconds 10] [--in-flight 8] [--write docs/BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pantree.domain.v1 import history_pb2, product_pb2
from pantree.orchestrator.v1 import orchestrator_service_pb2 as pb

from pantree_common import config as config_loader
from pantree_common import logging as pantree_logging
from pantree_common.domain import catalog
from pantree_common.domain.dates import today_epoch_day
from services.mesh import STEPS, MeshConfig, create_mesh_server

NOOP_METHOD = "/pantree.bench.v1.NoopService/Ping"
RECOMMEND_METHOD = "/pantree.orchestrator.v1.OrchestratorService/Recommend"
PROCESS_SEED_METHOD = "/pantree.orchestrator.v1.OrchestratorService/ProcessSeed"
SERVING = health_pb2.HealthCheckResponse.SERVING


def serve(port: int) -> None:
    """Child process: the all-in-one mesh plus a no-op method behind the same interceptor."""

    async def noop(request: bytes, context: object) -> bytes:
        return b""

    async def main() -> None:
        config = config_loader.load(
            MeshConfig,
            {
                **os.environ,
                "PORT": str(port),
                "PANTREE_HOST": "127.0.0.1",
                "PANTREE_LOG_LEVEL": "WARNING",
                "PANTREE_METRICS_PORT": "0",
            },
        )
        pantree_logging.configure(config.logging.level)
        server = create_mesh_server(STEPS, config)
        server.server.add_generic_rpc_handlers(
            [
                grpc.method_handlers_generic_handler(
                    "pantree.bench.v1.NoopService",
                    {"Ping": grpc.unary_unary_rpc_method_handler(noop)},
                )
            ]
        )
        await server.serve_until_signalled()

    asyncio.run(main())


def history(events: int = 150) -> history_pb2.PurchaseHistory:
    """A 150-event history over 20 catalog products with weekly to monthly rhythms."""
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
    names = [p.name for p in catalog.products()[::4]][:20]
    return pb.ProcessSeedRequest(
        archetype="busy_family",
        months=6,
        random_seed=11,
        seed_items=[product_pb2.SeedItem(name=n) for n in names],
    )


@dataclass
class Result:
    name: str
    calls: int
    seconds: float
    latencies_ms: list[float]
    first_message_ms: list[float]

    @property
    def rps(self) -> float:
        return self.calls / self.seconds

    def percentile(self, values: list[float], q: float) -> float:
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def drive(
    channel: grpc.aio.Channel,
    name: str,
    method: str,
    payload: bytes,
    streaming: bool,
    seconds: float,
    in_flight: int,
) -> Result:
    call = channel.unary_stream(method) if streaming else channel.unary_unary(method)
    latencies: list[float] = []
    first: list[float] = []
    stop_at = time.perf_counter() + seconds

    async def worker() -> None:
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            if streaming:
                seen_first = False
                async for _ in call(payload, timeout=30):
                    if not seen_first:
                        first.append((time.perf_counter() - started) * 1000)
                        seen_first = True
            else:
                await call(payload, timeout=30)
            latencies.append((time.perf_counter() - started) * 1000)

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    return Result(name, len(latencies), time.perf_counter() - began, latencies, first)


async def measure(address: str, seconds: float, in_flight: int) -> list[Result]:
    async with grpc.aio.insecure_channel(address) as channel:
        recommend = pb.RecommendRequest(history=history()).SerializeToString()
        stream = seed().SerializeToString()
        plan = [
            ("no-op unary", NOOP_METHOD, b"", False),
            ("Recommend (150 events)", RECOMMEND_METHOD, recommend, False),
            ("ProcessSeed (6 months, 20 items)", PROCESS_SEED_METHOD, stream, True),
        ]
        for _, method, payload, streaming in plan:  # warm up every path once
            await drive(channel, "warm-up", method, payload, streaming, 1.0, in_flight)
        return [
            await drive(channel, name, method, payload, streaming, seconds, in_flight)
            for name, method, payload, streaming in plan
        ]


def report(results: list[Result], seconds: float, in_flight: int, command: str) -> str:
    noop = results[0]
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    lines = [
        f"### gRPC ceiling — {dt.date.today().isoformat()}",
        "",
        f"Machine: {os.cpu_count()} cores, {cpu}; Python {platform.python_version()}, "
        f"grpcio {grpc.__version__}. calls in flight: {in_flight}, {seconds:g} s per workload.",
        f"Command: `{command}`",
        "",
        "| workload | calls | rps | p50 ms | p99 ms | first message p50 ms | rps / no-op |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        first = f"{statistics.median(r.first_message_ms):.2f}" if r.first_message_ms else "—"
        lines.append(
            f"| {r.name} | {r.calls} | {r.rps:,.0f} | {r.percentile(r.latencies_ms, 0.5):.2f} | "
            f"{r.percentile(r.latencies_ms, 0.99):.2f} | {first} | {r.rps / noop.rps:.1%} |"
        )
    return "\n".join(lines) + "\n"


def wait_serving(address: str, timeout_s: float = 60) -> None:
    """Block until the server's overall health is SERVING (adapters ready)."""
    deadline = time.monotonic() + timeout_s
    with grpc.insecure_channel(address) as channel:
        check = health_pb2_grpc.HealthStub(channel).Check
        while time.monotonic() < deadline:
            try:
                if check(health_pb2.HealthCheckRequest(), timeout=1).status == SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.1)
    raise TimeoutError(f"{address} did not become SERVING in {timeout_s} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--in-flight", type=int, default=8)
    parser.add_argument("--write", type=Path, help="append the table to this Markdown file")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory() as data_dir:
        server = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(port)],
            env={**os.environ, "PANTREE_DATA_DIR": data_dir},
        )
        try:
            address = f"127.0.0.1:{port}"
            wait_serving(address)
            results = asyncio.run(measure(address, args.seconds, args.in_flight))
        finally:
            server.terminate()
            server.wait(timeout=30)
    command = "python bench/grpc_ceiling.py " + " ".join(
        a for a in sys.argv[1:] if not a.startswith("--write") and a != str(args.write)
    )
    table = report(results, args.seconds, args.in_flight, command.strip())
    print(table)
    if args.write:
        with args.write.open("a", encoding="utf-8") as out:
            out.write("\n" + table)


if __name__ == "__main__":
    main()
