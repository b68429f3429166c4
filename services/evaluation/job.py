"""`pantree evaluate` and `pantree train`: offline jobs that compose the cores in-process."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pantree_common.datasets import completejourney
from pantree_common.datasets.registry import load_dataset
from pantree_common.datasets.transactions import Transactions
from pantree_common.errors import InvalidArgument
from services.evaluation.baselines import GPTopFreq, baselines
from services.evaluation.ceiling import feature_ceiling
from services.evaluation.harness import evaluate_last_basket, run_evaluation
from services.evaluation.methods import Method
from services.evaluation.pantree_method import PantreeMethod
from services.evaluation.protocol import cutoff_at, rolling_cutoffs
from services.evaluation.report import plot_reliability, render_markdown
from services.recommendation.training import train_and_save

log = logging.getLogger("pantree.evaluation")


def _cutoffs(transactions: Transactions, spec: str) -> list[int]:
    if spec == "rolling":
        return rolling_cutoffs(transactions)
    try:
        offset = int(spec)
    except ValueError:
        raise InvalidArgument.single(
            "cutoffs", f"must be 'rolling' or a day number (e.g. 336), got {spec!r}"
        ) from None
    try:
        return [cutoff_at(transactions, offset)]
    except ValueError as exc:
        raise InvalidArgument.single("cutoffs", str(exc)) from None


def methods() -> list[Method]:
    """Every evaluated method: the five baselines, GP-TopFreq and Pantree's learned model."""
    return [*baselines(), GPTopFreq(), PantreeMethod()]


def evaluate(dataset: str, cutoffs: str, output: Path, last_basket: bool) -> dict[str, Any]:
    """Run the protocol and write the JSON to `output`; the reliability bins go beside it
    (`<output stem>.reliability.json`) for the report's diagram."""
    started = time.perf_counter()
    transactions = load_dataset(dataset)
    evaluated = methods()
    run = run_evaluation(transactions, evaluated, _cutoffs(transactions, cutoffs))
    result = run.result
    if last_basket:
        result["last_basket"] = evaluate_last_basket(transactions, evaluated)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    reliability = output.with_name(f"{output.stem}.reliability.json")
    reliability.write_text(json.dumps(run.reliability, indent=2) + "\n", encoding="utf-8")
    log.info(
        "evaluated",
        extra={
            "dataset": result["dataset"],
            "seconds": round(time.perf_counter() - started, 1),
            "method_seconds": {k: round(v, 1) for k, v in run.seconds.items()},
        },
    )
    return result


def ceiling(dataset: str, cutoffs: str, output: Path, with_context: bool) -> dict[str, Any]:
    """Write the in-window AUC ceiling (services.evaluation.ceiling) of the data set to `output`;
    `with_context` adds the Complete Journey's demographics and promotions."""
    if with_context and dataset != completejourney.NAME:
        raise InvalidArgument.single(
            "context", f"only the {completejourney.NAME} data set has context columns"
        )
    context = completejourney.context_columns if with_context else None
    transactions = load_dataset(dataset)
    result = feature_ceiling(transactions, _cutoffs(transactions, cutoffs), context=context)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result


def report(results: Sequence[Path], output: Path, notes: str = "") -> Path:
    """Write docs/EVALUATION.md (and its reliability diagram beside it) from evaluation JSONs."""
    loaded = [json.loads(path.read_text(encoding="utf-8")) for path in results]
    reliability = {
        result["dataset"]: json.loads(
            path.with_name(f"{path.stem}.reliability.json").read_text(encoding="utf-8")
        )
        for path, result in zip(results, loaded, strict=True)
    }
    png = plot_reliability(reliability, output.with_name("reliability.png"))
    markdown = render_markdown(
        loaded,
        [r["last_basket"] for r in loaded if "last_basket" in r],
        reliability_png=png.name,
        notes=notes,
    )
    output.write_text(markdown, encoding="utf-8")
    return output


def train(dataset: str, output: Path, cutoff: str) -> Path:
    """Train the subscription model on the data before the cutoff ('end': all of it)."""
    transactions = load_dataset(dataset)
    cutoff_day = None if cutoff == "end" else _cutoffs(transactions, cutoff)[0]
    return train_and_save(transactions, output, cutoff_day)
