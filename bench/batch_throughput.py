"""`pantree batch` throughput: the whole Complete Journey and a synthetic 1M-shopper file.

Each case runs the command as an operator would, in a fresh process (imports, catalog, model,
data, scoring, Parquet), --repeats times, and reports the best and median wall time. Where the
time goes is measured apart, in this process: loading the purchase file (load_dataset), loading
the model, and `batch.run` (statistics, model, offers, writing), which the command also reports.

Inputs are made in --work-dir on first use and reused: the synthetic file
(bench/synthetic_shoppers.py, 1M shoppers), a 50k-shopper synthetic file of another seed to
train the synthetic model on, and the two models (`pantree train`, ~20 s each).

    python bench/batch_throughput.py [--work-dir /tmp/pantree-batch] [--customers 1000000]
        [--workers 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "pantree_common" / "generated")]

from pantree_common.datasets.registry import load_dataset  # noqa: E402
from pantree_common.domain.catalog import open_catalog, use_catalog  # noqa: E402
from services.recommendation import batch  # noqa: E402
from services.recommendation.config import RecommendationConfig  # noqa: E402
from services.recommendation.model import load  # noqa: E402

PANTREE = str(Path(sys.executable).with_name("pantree"))
SUMMARY = re.compile(r"wrote .*: ([\d,]+) offers for [\d,]+ of ([\d,]+) shoppers")


def _prepare(work: Path, customers: int) -> dict[str, tuple[str, Path, dict[str, str]]]:
    """The cases: name -> (input, model directory, environment overrides)."""
    work.mkdir(parents=True, exist_ok=True)
    shoppers = work / f"shoppers-{customers}.parquet"
    training = work / "train-50000-seed6.parquet"
    for path, count, seed in ((shoppers, customers, 5), (training, 50_000, 6)):
        if not path.exists():
            script = str(ROOT / "bench" / "synthetic_shoppers.py")
            arguments = ["--customers", str(count), "--seed", str(seed), "--output", str(path)]
            subprocess.run([sys.executable, script, *arguments], check=True)
    models = {"completejourney": work / "model-cj", str(training): work / "model-synthetic"}
    for dataset, directory in models.items():
        if not (directory / "model.skops").exists():
            train = [PANTREE, "train", "--dataset", dataset, "--output", str(directory)]
            subprocess.run(train, check=True)
    # The synthetic categories are the built-in catalog's (bakery and produce are not offered).
    return {
        "Complete Journey (CJ catalog)": ("completejourney", work / "model-cj", {}),
        f"synthetic {customers:,} shoppers (built-in catalog)": (
            str(shoppers),
            work / "model-synthetic",
            {"PANTREE_CATALOG": "builtin"},
        ),
    }


def _command(
    source: str, model: Path, env: dict[str, str], output: Path, workers: int
) -> tuple[float, list[str]]:
    arguments = ["--input", source, "--output", str(output), "--model", str(model), "--quiet"]
    started = time.perf_counter()
    done = subprocess.run(
        [PANTREE, "batch", *arguments, "--workers", str(workers)],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, **env},
    )
    wall = time.perf_counter() - started
    match = SUMMARY.search(done.stdout)
    assert match, done.stdout
    return wall, [group.replace(",", "") for group in match.groups()]


def _phases(source: str, model_dir: Path, env: dict[str, str], output: Path, workers: int) -> str:
    """Seconds to load the file, load the model and run the batch, in this process."""
    catalog = env.get("PANTREE_CATALOG", "completejourney")
    use_catalog(open_catalog(catalog, os.environ.get("PANTREE_DATA_DIR", "~/.local/share/pantree")))
    started = time.perf_counter()
    transactions = load_dataset(source)
    loaded = time.perf_counter()
    model = load(model_dir)
    modelled = time.perf_counter()
    options = batch.BatchOptions(workers=workers)
    batch.run(transactions, output, options, RecommendationConfig(), 3, model)
    scored = time.perf_counter()
    return (
        f"load {loaded - started:.1f} s ({transactions.event_count:,} events), "
        f"model {modelled - loaded:.1f} s, batch.run {scored - modelled:.1f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/pantree-batch"))
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    cases = _prepare(args.work_dir, args.customers)
    output = args.work_dir / "offers.parquet"
    print(f"`pantree batch --workers {args.workers} --model DIR`, {args.repeats} runs each")
    print()
    print("| input | shoppers | offers | wall, best | wall, median | shoppers/s (best) |")
    print("|---|---|---|---|---|---|")
    notes = []
    for name, (source, model, env) in cases.items():
        walls = []
        for _ in range(args.repeats):
            wall, (offers, shoppers) = _command(source, model, env, output, args.workers)
            walls.append(wall)
        best = min(walls)
        print(
            f"| {name} | {int(shoppers):,} | {int(offers):,} | {best:.1f} s | "
            f"{statistics.median(walls):.1f} s | {int(shoppers) / best:,.0f} |"
        )
        notes.append(f"- {name}: {_phases(source, model, env, output, args.workers)}")
    print()
    print("Where the time goes (one run in one process, after imports):")
    print("\n".join(notes))


if __name__ == "__main__":
    main()
