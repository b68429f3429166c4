"""What one internal gRPC hop costs on the Pantree server stack, as a share of a no-op call.

A child process serves, through `create_server` and the channel factory, a no-op method and
a `Chain` method whose handler makes N no-op calls back to the same server (what the
orchestrator does to its steps in all-in-one mode) and nothing else. The client (8 calls in
flight) measures both in one run, so the ratio is the ceiling for a handler making N hops.

    python bench/hop_cost.py [--hops 1 3] [--seconds 4]
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import subprocess
import sys
import time
from typing import Any

import grpc

from pantree_common.client import ClientConfig, create_channel
from pantree_common.server import ServerConfig, create_server

SERVICE = "pantree.bench.v1.HopService"


def serve(port: int, hops: int) -> None:
    async def main() -> None:
        server = create_server(
            ServerConfig(host="127.0.0.1", port=port, metrics_port=0), lambda address: []
        )
        channel = create_channel(server.address, ClientConfig(), 4 << 20)
        noop_call = channel.unary_unary(f"/{SERVICE}/Noop")

        async def noop(request: bytes, context: Any) -> bytes:
            return b""

        async def chain(request: bytes, context: Any) -> bytes:
            for _ in range(hops):
                await noop_call(b"", timeout=5)
            return b""

        handlers = {
            "Noop": grpc.unary_unary_rpc_method_handler(noop),
            "Chain": grpc.unary_unary_rpc_method_handler(chain),
        }
        server.server.add_generic_rpc_handlers(
            [grpc.method_handlers_generic_handler(SERVICE, handlers)]
        )
        await server.serve_until_signalled()

    asyncio.run(main())


async def drive(address: str, method: str, seconds: float, in_flight: int) -> float:
    async with grpc.aio.insecure_channel(address) as channel:
        call = channel.unary_unary(f"/{SERVICE}/{method}")
        for _ in range(100):
            await call(b"", timeout=5)
        done = 0
        stop_at = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < stop_at:
                await call(b"", timeout=5)
                done += 1

        await asyncio.gather(*(worker() for _ in range(in_flight)))
        return done / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hops", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--in-flight", type=int, default=8)
    parser.add_argument("--serve", type=int, nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(*args.serve)
        return
    print("| internal hops | no-op rps | chain rps | chain / no-op |")
    print("|---|---|---|---|")
    for hops in args.hops:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        child = subprocess.Popen([sys.executable, __file__, "--serve", str(port), str(hops)])
        try:
            address = f"127.0.0.1:{port}"
            with grpc.insecure_channel(address) as probe:
                grpc.channel_ready_future(probe).result(timeout=30)
            noop = asyncio.run(drive(address, "Noop", args.seconds, args.in_flight))
            chain = asyncio.run(drive(address, "Chain", args.seconds, args.in_flight))
        finally:
            child.terminate()
            child.wait(timeout=30)
        print(f"| {hops} | {noop:,.0f} | {chain:,.0f} | {chain / noop:.1%} |")


if __name__ == "__main__":
    main()
