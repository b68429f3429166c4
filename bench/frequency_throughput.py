"""Repurchase statistics throughput: customers per second through `analyze`, 1 and 2 processes.

Synthetic customers with 150 events over 25 catalog products each, analysed in batches of
1,000 (the vectorised path the batch job and BatchAnalyzeHistories use). Each worker process
times its own batches (best of 3 passes); the total is the sum over workers. Proto conversion
is timed separately on one core.

    python bench/frequency_throughput.py [--customers 40000] [--workers 1 2]
"""

from __future__ import annotations

import argparse
import multiprocessing
import time

import numpy as np
from numpy.typing import NDArray

from pantree_common.domain import catalog
from pantree_common.domain.history import History
from services.frequency.statistics import analyze, to_protos

BATCH = 1_000
EVENTS = 150
PRODUCTS_PER_CUSTOMER = 25
AS_OF = 19_731


def histories(count: int, seed: int) -> list[History]:
    rng = np.random.default_rng(seed)
    products = catalog.products()
    made = []
    for c in range(count):
        bought = rng.choice(len(products), size=PRODUCTS_PER_CUSTOMER, replace=False)
        made.append(
            History.build(
                f"c{c}",
                products,
                rng.choice(bought, size=EVENTS),
                np.sort(rng.integers(AS_OF - 730, AS_OF, size=EVENTS)),
                rng.integers(1, 4, EVENTS).astype(float),
            )
        )
    return made


def _batches(made: list[History]) -> list[tuple[list[History], NDArray[np.int32]]]:
    return [
        (made[s : s + BATCH], np.full(len(made[s : s + BATCH]), AS_OF, dtype=np.int32))
        for s in range(0, len(made), BATCH)
    ]


def analyze_rate(args: tuple[int, int]) -> float:
    count, seed = args
    batches = _batches(histories(count, seed))
    analyze(*batches[0], 3)
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for batch, as_of in batches:
            analyze(batch, as_of, 3)
        best = min(best, time.perf_counter() - started)
    return count / best


def proto_rate(count: int) -> float:
    batches = _batches(histories(count, 99))
    tables = [(batch, as_of, analyze(batch, as_of, 3)) for batch, as_of in batches]
    started = time.perf_counter()
    for batch, as_of, table in tables:
        to_protos(batch, table, as_of, 3)
    return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=40_000, help="per worker")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    print("| path | workers | customers/s |")
    print("|---|---|---|")
    for workers in args.workers:
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            rates = pool.map(analyze_rate, [(args.customers, seed) for seed in range(workers)])
        print(f"| analyze (batches of {BATCH:,}) | {workers} | {sum(rates):,.0f} |")
    print(f"| to_protos (HistoryAnalysis messages) | 1 | {proto_rate(args.customers // 4):,.0f} |")


if __name__ == "__main__":
    main()
