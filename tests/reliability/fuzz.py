"""`make fuzz`: coverage-guided fuzzing of every method of the real servers (the whole mesh on
one port, in this process so libFuzzer sees the server code's coverage through atheris).

An input is one call: byte 0 picks the method, byte 1 how to read the rest: as the raw request
bytes (libFuzzer mutates them, starting from valid requests) or as choices for a request built
from the method's descriptor (protogen.py). A call that ends UNKNOWN or INTERNAL is a crash:
libFuzzer stops and keeps the input. After the last run, health must be SERVING; the status
counts go to .artifacts/reliability/fuzz.json.

    python -m tests.reliability.fuzz --runs 100000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import atheris
import grpc

with atheris.instrument_imports(include=["pantree_common", "services"]):
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from pantree.frequency.v1 import frequency_service_pb2 as frequency_pb
    from pantree.orchestrator.v1 import orchestrator_service_pb2 as orchestrator_pb
    from pantree.simulation.v1 import simulation_service_pb2 as simulation_pb
    from pantree.vectors.v1 import vectors_service_pb2 as vectors_pb

    from services.mesh import STEPS, create_mesh_server
    from tests.histories import rhythmic_history
    from tests.reliability.harness import FIGURES_DIR, record_figures
    from tests.reliability.protogen import build, methods
    from tests.reliability.test_bad_input import FORBIDDEN, call
    from tests.service.conftest import TODAY, mesh_config, seed_request

METHODS = methods()
RAW, BUILT = 0, 1


class FuzzSource:
    """protogen.Source over libFuzzer's bytes."""

    def __init__(self, data: atheris.FuzzedDataProvider) -> None:
        self._data = data

    def flag(self) -> bool:
        return bool(self._data.ConsumeBool())

    def count(self, most: int) -> int:
        return int(self._data.ConsumeIntInRange(0, most))

    def integer(self, low: int, high: int) -> int:
        return int(self._data.ConsumeIntInRange(low, high))

    def real(self) -> float:
        return float(self._data.ConsumeFloat())

    def text(self) -> str:
        return str(self._data.ConsumeUnicodeNoSurrogates(self._data.ConsumeIntInRange(0, 64)))

    def data(self) -> bytes:
        return bytes(self._data.ConsumeBytes(self._data.ConsumeIntInRange(0, 64)))

    def pick(self, options: list[Any]) -> Any:
        return self._data.PickValueInList(list(options))


def valid_requests() -> dict[str, bytes]:
    """One valid request per method that has an easy one: the seeds libFuzzer mutates."""
    history = rhythmic_history()
    seed = seed_request(months=2)
    found = {
        "OrchestratorService/ProcessSeed": seed,
        "OrchestratorService/Recommend": orchestrator_pb.RecommendRequest(history=history),
        "FrequencyService/AnalyzeHistory": frequency_pb.AnalyzeHistoryRequest(history=history),
        "VectorService/SearchSimilarProducts": vectors_pb.SearchSimilarProductsRequest(
            query_texts=["milk", "coffee"], top_k=5
        ),
        "VectorService/UpsertCustomerProfile": vectors_pb.UpsertCustomerProfileRequest(
            history=history
        ),
        "SimulationService/SimulateHistory": simulation_pb.SimulateHistoryRequest(
            archetype="busy_family",
            seed_items=[{"name": "milk", "product_id": "p-1001"}],
            months=2,
            random_seed=1,
        ),
    }
    return {path: found[path.split(".", 3)[-1]].SerializeToString()
            for path, _ in METHODS if path.split(".", 3)[-1] in found}  # fmt: skip


class Mesh:
    """Every step and the orchestrator on one port, served by a loop in a thread of its own."""

    def __init__(self, data_dir: Path) -> None:
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)  # gRPC binds an aio server to the loop current now
        self.server = create_mesh_server(STEPS, mesh_config(data_dir), today=lambda: TODAY)
        self.loop.run_until_complete(self.server.start())
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(grace=1), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100_000)
    args, libfuzzer_flags = parser.parse_known_args()
    work = Path(tempfile.mkdtemp(prefix="pantree-fuzz-"))
    corpus = FIGURES_DIR / "fuzz-corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    for index, (path, body) in enumerate(valid_requests().items()):
        position = [p for p, _ in METHODS].index(path)
        (corpus / f"seed-{index}").write_bytes(bytes([position, RAW]) + body)
    mesh = Mesh(work / "data")
    channel = grpc.insecure_channel(mesh.server.address)
    codes: Counter[str] = Counter()
    started = time.monotonic()

    def finish() -> None:
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        serving = health.status == health_pb2.HealthCheckResponse.SERVING
        idle = asyncio.run_coroutine_threadsafe(mesh.server.drain.wait_idle(5), mesh.loop).result(
            10
        )
        record_figures(
            "fuzz",
            {
                "runs": codes.total(),
                "seconds": round(time.monotonic() - started, 1),
                "codes": dict(codes.most_common()),
                "health_serving_at_end": serving,
                "handlers_idle_at_end": idle,
            },
        )
        channel.close()
        mesh.stop()
        print(json.dumps(dict(codes)), file=sys.stderr)
        os._exit(0 if serving and idle else 1)  # libFuzzer would not return to Python

    def one_input(data: bytes) -> None:
        if len(data) < 2:
            return
        path, method = METHODS[data[0] % len(METHODS)]
        if data[1] % 2 == BUILT:
            body = build(method.input_type, FuzzSource(atheris.FuzzedDataProvider(data[2:])))
            request = body.SerializeToString()
        else:
            request = data[2:]
        code = call(channel, path, method, request)
        codes[code.name] += 1
        if code in FORBIDDEN:
            raise AssertionError(f"{path} answered {code.name} to {request!r}")
        if codes.total() >= args.runs:
            finish()

    atheris.Setup(
        [sys.argv[0], *libfuzzer_flags, "-max_len=8192", "-timeout=30", str(corpus)], one_input
    )
    atheris.Fuzz()


if __name__ == "__main__":
    main()
