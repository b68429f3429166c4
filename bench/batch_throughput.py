"""`pantree batch` throughput: the whole Complete Journey and a synthetic 1M-shopper file.

Each case runs the command as an operator would, in a fresh process (imports, catalog, model,
data, scoring, Parquet), --repeats times, and reports the best and median wall time. Where the
time goes is measured apart, in this process: loading the purchase file (load_dataset), loading
the model, and `batch.run` (statistics, model, offers, writing), which the command also reports.

Peak memory, the largest over the runs, two ways: the command's processes together (the
command and its forked workers: the sum of their proportional set sizes, so that the pages the
workers share with the command are counted once), sampled every 0.1 s; and the largest single
process (the kernel's exact high-water mark of resident memory, from wait4; a forked worker's
counts the pages it shares with the command in full, so it can exceed the sampled total).

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
import tempfile
import time
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Run:
    """One run of the command."""

    wall: float
    shoppers: int
    offers: int
    peak_total: int
    """Bytes: the largest sum of the proportional set sizes of the process and its children."""
    peak_largest: int
    """Bytes: the high-water mark of the largest single process's resident memory."""


def _tree(pid: int) -> list[int]:
    """The process and its descendants, as /proc lists them now."""
    found = [pid]
    for parent in found:
        for children in Path(f"/proc/{parent}/task").glob("*/children"):
            try:
                found += [int(child) for child in children.read_text().split()]
            except OSError:  # the task ended while being read
                continue
    return found


def _pss(pid: int) -> int:
    """Proportional set size in bytes; 0 once the process is gone."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0
    line = next((line for line in text.splitlines() if line.startswith("Pss:")), "Pss: 0 kB")
    return int(line.split()[1]) * 1024


def _command(source: str, model: Path, env: dict[str, str], output: Path, workers: int) -> Run:
    arguments = ["--input", source, "--output", str(output), "--model", str(model), "--quiet"]
    with tempfile.TemporaryFile("w+") as stdout:
        started = time.perf_counter()
        process = subprocess.Popen(
            [PANTREE, "batch", *arguments, "--workers", str(workers)],
            stdout=stdout,
            env={**os.environ, **env},
        )
        peak_total = 0
        while True:
            # wait4, not Popen.wait: it also gives the exact peak of the largest process.
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            peak_total = max(peak_total, sum(_pss(member) for member in _tree(process.pid)))
            time.sleep(0.1)
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        stdout.seek(0)
        text = stdout.read()
    if process.returncode:
        raise subprocess.CalledProcessError(process.returncode, process.args, text)
    match = SUMMARY.search(text)
    assert match, text
    offers, shoppers = (int(group.replace(",", "")) for group in match.groups())
    return Run(wall, shoppers, offers, peak_total, usage.ru_maxrss * 1024)


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


def _gb(size: int) -> str:
    return f"{size / 1e9:.2f} GB"


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
    print(
        "| input | shoppers | offers | wall, best | wall, median | shoppers/s (best) "
        "| peak memory, all processes | peak memory, largest process |"
    )
    print("|---|---|---|---|---|---|---|---|")
    notes = []
    for name, (source, model, env) in cases.items():
        runs = [_command(source, model, env, output, args.workers) for _ in range(args.repeats)]
        walls = [run.wall for run in runs]
        best, last = min(walls), runs[-1]
        print(
            f"| {name} | {last.shoppers:,} | {last.offers:,} | {best:.1f} s | "
            f"{statistics.median(walls):.1f} s | {last.shoppers / best:,.0f} | "
            f"{_gb(max(run.peak_total for run in runs))} | "
            f"{_gb(max(run.peak_largest for run in runs))} |"
        )
        notes.append(f"- {name}: {_phases(source, model, env, output, args.workers)}")
    print()
    print(
        "Peak memory: the largest of the runs; all processes is the sum of the proportional set "
        "sizes of the command and its workers (shared pages counted once), sampled every 0.1 s; "
        "largest process is the kernel's high-water mark of one process's resident memory "
        "(a forked worker's counts the pages it shares with the command in full)."
    )
    print()
    print("Where the time goes (one run in one process, after imports):")
    print("\n".join(notes))


if __name__ == "__main__":
    main()
