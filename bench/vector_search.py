"""Similar-product search latency: one batched search of 20 vectors over a 92k-product catalog.

For each engine (Milvus Lite file, Milvus server started by tests/milvus_server.py) the script
stores the products through MilvusStore.upsert_products, waits for the collection to settle
(flush, then batched searches until their latency stops falling), and times one
`MilvusStore.search_products` call carrying --queries query vectors with top_k --top-k,
--repeats times after --warmup untimed calls: the call the vectors service makes for a
shopper's seed items, output fields (name, category, department, price) included. Recall@k is
measured against an exact numpy search of the same vectors.

Vectors (--vectors): `catalog` (default) embeds the 91,613 products of the Complete Journey
catalog (built into --data-dir on first use, ~30 s) and 20 seed-item names with the hashing
embedder at --dimensions (MiniLM's 384 by default); `random` uses --products random unit
vectors (the worst case for approximate indexes).

    python bench/vector_search.py [--engines lite server] [--vectors catalog|random]
        [--index IVF_FLAT|FLAT|HNSW] [--dimensions 384] [--queries 20] [--top-k 10]
        [--repeats 50] [--warmup 5]
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

# Runnable from a bare checkout: the repo first on the path (tests/ holds the server helper).
ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "pantree_common" / "generated")]

from pymilvus import MilvusClient  # noqa: E402

from pantree_common.domain.catalog import open_catalog  # noqa: E402
from pantree_common.domain.history import Product  # noqa: E402
from services.vectors.embedding import HashingEmbedder, product_text  # noqa: E402
from services.vectors.store import DEFAULT_INDEX, EXACT, IVF, IndexSpec, MilvusStore  # noqa: E402
from tests.milvus_server import MilvusServer, start_milvus_server  # noqa: E402

SETTLE_LIMIT_S = 300.0
SEED_ITEMS = (
    "milk", "eggs", "bread", "coffee", "bananas", "butter", "cheddar cheese", "yogurt",
    "orange juice", "chicken breast", "ground beef", "toilet paper", "paper towels", "cereal",
    "pasta", "tomato sauce", "apples", "potato chips", "dog food", "laundry detergent",
)  # fmt: skip
INDEXES = {
    "FLAT": EXACT,
    "IVF_FLAT": IVF,
    "HNSW": IndexSpec("HNSW", {"M": 16, "efConstruction": 128}, {"ef": 64}),
}


def unit_vectors(rows: int, dimensions: int, rng: np.random.Generator) -> NDArray[np.float32]:
    vectors = rng.standard_normal((rows, dimensions), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors


def catalog(count: int) -> list[Product]:
    departments = ("grocery", "produce", "meat", "drug gm", "deli", "pastry", "kiosk-gas")
    return [
        Product(
            f"p-{i:06d}",
            f"Product {i} family size {i % 97} oz",
            f"category {i % 300}",
            departments[i % len(departments)],
            round(0.5 + (i % 2000) / 100, 2),
        )
        for i in range(count)
    ]


def time_ms(call: Callable[[], object]) -> float:
    began = time.perf_counter()
    call()
    return (time.perf_counter() - began) * 1000


def settle(uri: str, search: Callable[[], object], at_least_s: float) -> float:
    """Flush, then search until at_least_s have passed and three rounds of 5 calls in a row
    brought the median down by no more than 10% (segments merge and indexes build in the
    background after a large insert); returns the seconds spent."""
    began = time.monotonic()
    client = MilvusClient(uri=uri, dedicated=True)
    try:
        client.flush("bench_products", timeout=300)
    finally:
        client.close()
    best, flat_rounds = float("inf"), 0
    while time.monotonic() - began < SETTLE_LIMIT_S:
        median = statistics.median(time_ms(search) for _ in range(5))
        flat_rounds = flat_rounds + 1 if median > best * 0.9 else 0
        best = min(best, median)
        if flat_rounds >= 3 and time.monotonic() - began >= at_least_s:
            break
    return time.monotonic() - began


def workload(
    args: argparse.Namespace,
) -> tuple[list[Product], NDArray[np.float32], NDArray[np.float32]]:
    """Products, their unit vectors and the query vectors."""
    if args.vectors == "random":
        rng = np.random.default_rng(7)
        products = catalog(args.products)
        vectors = unit_vectors(args.products, args.dimensions, rng)
        return products, vectors, unit_vectors(args.queries, args.dimensions, rng)
    products = list(open_catalog("completejourney", args.data_dir).products)
    embedder = HashingEmbedder(args.dimensions)
    vectors = embedder.embed([product_text(p) for p in products])
    names = [SEED_ITEMS[i % len(SEED_ITEMS)] for i in range(args.queries)]
    return products, vectors, embedder.embed(names)


def recall(
    found: list[list[str]],
    vectors: NDArray[np.float32],
    ids: list[str],
    queries: NDArray[np.float32],
    k: int,
) -> float:
    """Mean share of the returned ids that belong to the exact top k (numpy, same unit vectors).
    Products with equal vectors (same text) tie: any of them counts."""
    position = {product_id: i for i, product_id in enumerate(ids)}
    scores = queries @ vectors.T
    shares = []
    for row, got in zip(scores, found, strict=True):
        kth = np.partition(row, -k)[-k]
        shares.append(sum(row[position[i]] >= kth - 1e-5 for i in got) / k)
    return float(np.mean(shares))


def run(
    engine: str,
    uri: str,
    args: argparse.Namespace,
    server: MilvusServer | None,
    data: tuple[list[Product], NDArray[np.float32], NDArray[np.float32]],
) -> str:
    products, vectors, queries = data
    store = MilvusStore(
        uri, args.dimensions, timeout_s=120, collection_prefix="bench", index=INDEXES[args.index]
    )
    try:
        began = time.monotonic()
        store.upsert_products(products, vectors)
        load_s = time.monotonic() - began
        assert store.count_products() == len(products)

        def search() -> list[list[str]]:
            found = store.search_products(queries, args.top_k, ())
            assert len(found) == args.queries and all(len(m) == args.top_k for m in found)
            return [[m.product.product_id for m in matches] for matches in found]

        settle_s = settle(uri, search, args.settle_s)
        for _ in range(args.warmup):
            search()
        times = sorted(time_ms(search) for _ in range(args.repeats))
        unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        hit_rate = recall(search(), unit, [p.product_id for p in products], queries, args.top_k)
    finally:
        store.close()
    p50 = statistics.median(times)
    p95 = times[min(len(times) - 1, round(0.95 * len(times)) - 1)]
    memory = f"{server.rss_bytes() / 2**20:,.0f} MiB" if server else "(in this process)"
    started = f"{server.startup_s:.1f} s" if server else "—"
    return (
        f"| {engine} | {args.index} | {len(products):,} | {load_s:.1f} | {settle_s:.1f} | "
        f"{p50:.1f} | {p95:.1f} | {min(times):.1f} | {hit_rate:.3f} | {started} | {memory} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--engines", nargs="+", choices=["lite", "server"], default=["lite", "server"]
    )
    parser.add_argument("--vectors", choices=["catalog", "random"], default="catalog")
    default_index = next(name for name, spec in INDEXES.items() if spec == DEFAULT_INDEX)
    parser.add_argument("--index", choices=sorted(INDEXES), default=default_index)
    parser.add_argument(
        "--data-dir",
        default=os.environ.get("PANTREE_DATA_DIR", "~/.local/share/pantree"),
        help="where the Complete Journey catalog is built (once) and read",
    )
    parser.add_argument("--products", type=int, default=92_000, help="with --vectors random")
    parser.add_argument("--dimensions", type=int, default=384)
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument(
        "--settle-s", type=float, default=0.0, help="wait at least this long for index builds"
    )
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    data = workload(args)
    rows = []
    with tempfile.TemporaryDirectory(prefix="pantree-bench-") as scratch:
        for engine in args.engines:
            if engine == "lite":
                lite = str(Path(scratch) / "lite" / "milvus.db")
                rows.append(run("Milvus Lite", lite, args, None, data))
            else:
                server = start_milvus_server(Path(scratch) / "server")
                try:
                    rows.append(run("Milvus server 2.3.5", server.uri, args, server, data))
                finally:
                    server.stop()
            print(rows[-1], flush=True)
    import pymilvus  # noqa: PLC0415

    print()
    print(
        f"Machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}; "
        f"Python {platform.python_version()}, pymilvus {pymilvus.__version__}. "
        f"{args.queries} query vectors ({args.vectors}) of {args.dimensions} dims in one search "
        f"call, top_k {args.top_k}, metric IP, {args.repeats} timed calls after {args.warmup}; "
        f"load average {os.getloadavg()[0]:.2f} at the end."
    )
    print()
    print(
        f"| engine | index | products | load s | settle s | p50 ms | p95 ms | min ms | "
        f"recall@{args.top_k} | server start | server RSS |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(row)


if __name__ == "__main__":
    main()
