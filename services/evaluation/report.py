"""docs/EVALUATION.md from evaluation results: tables, the protocol in words, targets, and a
reliability diagram (matplotlib's Agg renderer, no display needed).

Inputs are the plain JSON the harness produces: `evaluate` results, `evaluate_last_basket`
results, and the per-method reliability bins of `EvaluationRun.reliability`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.evaluation.harness import LAST_BASKET_NAMES, METRIC_NAMES

LOWER_IS_BETTER = frozenset({"brier", "ece", "interval_mae_days", "interval_medae_days"})
TARGET_METHOD = "pantree"


@dataclass(frozen=True)
class Target:
    """A goal on one metric's mean: `value` is a floor, or a ceiling when `at_most`."""

    dataset: str
    metric: str
    value: float
    at_most: bool = False
    last_basket: bool = False

    def met(self, achieved: float) -> bool:
        return achieved <= self.value if self.at_most else achieved >= self.value

    def describe(self) -> str:
        return f"{'≤' if self.at_most else '≥'} {self.value:g}"


TARGETS = (
    Target("completejourney", "rep_recall@10", 0.28),
    Target("completejourney", "ndcg@10", 0.45),
    Target("completejourney", "auc", 0.80),
    Target("completejourney", "ece", 0.03, at_most=True),
    Target("completejourney", "interval_mae_days", 30.0, at_most=True),
    Target("completejourney", "within_7d", 0.35),
    Target("tafeng", "recall@10", 0.14, last_basket=True),
)

PROTOCOL_TEXT = """\
**Time split, not user split.** At a cutoff day T every method sees only the purchases on days
before T (the history) and is judged on the next 28 days [T, T + 28). Rolling cutoffs fall every
4 weeks, counted from the data's first day, over the second half of its span, wherever the whole
28-day window lies inside the data (Complete Journey: days 196, 224, ..., 336 of 2017). Each
figure is the mean ± sample standard deviation across cutoffs (± 0 for a single cutoff).
Customers evaluated at a cutoff are those with a history and at least one purchase in the window.

**Task A — which items to subscribe to.** Truth: the distinct items a customer buys in the
window; repeat-only truth (`rep_`): those the customer had already bought before T. Per customer,
then averaged: Recall@k = |top-k ∩ truth| / |truth|; NDCG@k = DCG@k / IDCG with binary gains,
a log2(rank + 1) discount and IDCG over min(k, |truth|) items; PHR@k = 1 if any truth item is in
the top k. Repeat-only metrics average over customers with at least one repeat-only item.

**Task B — interval and confidence.** Pairs (customer, item) with at least 3 distinct purchase
days before T. Label: bought again in the window. AUC of the predicted P(rebuy in window)
(ROC AUC), Brier score, and ECE over 10 equal-width probability bins weighted by their counts.
On the pairs that are rebought, the actual interval is the first window purchase day minus the
last purchase day before T: mean and median absolute error of the predicted interval and the
share within ± 7 days. A dash means the method makes no such prediction.

**Last basket (Ta-Feng, for the literature).** Each customer's last purchase day is the truth,
all earlier days the history (customers with at least 2 purchase days); Recall, NDCG and PHR at
10, with NDCG also in the literature's uncapped form (IDCG over all truth items)."""


def _value(entry: Any) -> float | None:
    """The mean of a {"mean", "sd"} entry, or a plain number."""
    if isinstance(entry, Mapping):
        entry = entry.get("mean")
    if entry is None or not math.isfinite(float(entry)):
        return None
    return float(entry)


def _format(metric: str, value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.2f}" if metric.endswith("_days") else f"{value:.4f}"


def _cell(metric: str, entry: Any, best: float | None) -> str:
    value = _value(entry)
    text = _format(metric, value)
    if isinstance(entry, Mapping) and value is not None and entry.get("sd") is not None:
        sd = float(entry["sd"])
        text += f" ± {_format(metric, sd)}" if sd > 0 else ""
    if value is not None and best is not None and value == best:
        text = f"**{text}**"
    return text


def _extreme(metric: str, values: Sequence[float | None]) -> float | None:
    """The best of the present values (lowest for errors, highest otherwise)."""
    present = [v for v in values if v is not None]
    if not present:
        return None
    return min(present) if metric in LOWER_IS_BETTER else max(present)


def _best(metric: str, values: Sequence[float | None]) -> float | None:
    """The value to bold in a row: only when at least two methods have one."""
    present = [v for v in values if v is not None]
    return _extreme(metric, present) if len(present) >= 2 else None


def metrics_table(methods: Mapping[str, Mapping[str, Any]], metric_names: Sequence[str]) -> str:
    """Rows: metrics; columns: methods side by side; the best value of each row in bold."""
    names = list(methods)
    lines = [
        "| metric | " + " | ".join(f"`{name}`" for name in names) + " |",
        "|---|" + "---:|" * len(names),
    ]
    for metric in metric_names:
        entries = [methods[name].get(metric) for name in names]
        best = _best(metric, [_value(e) for e in entries])
        cells = [_cell(metric, entry, best) for entry in entries]
        lines.append(f"| {metric} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _rolling_section(result: Mapping[str, Any]) -> str:
    protocol = result["protocol"]
    offsets = protocol.get("cutoff_offsets_days", [])
    cutoffs = protocol.get("cutoffs", [])
    where = ", ".join(f"{c} (day {o})" for c, o in zip(cutoffs, offsets, strict=False))
    kind = "single cutoff" if len(cutoffs) == 1 else f"{len(cutoffs)} rolling cutoffs"
    return (
        f"### {result['dataset']} — time split, {kind}\n\n"
        f"Cutoffs: {where}; horizon {protocol['horizon_days']} days; "
        f"{result['n_customers']} distinct customers evaluated "
        f"(per cutoff: {', '.join(str(n) for n in protocol.get('customers_per_cutoff', []))}); "
        f"Task-B pairs per cutoff: "
        f"{', '.join(str(n) for n in protocol.get('task_b_pairs_per_cutoff', []))}.\n\n"
        + metrics_table(result["methods"], METRIC_NAMES)
    )


def _last_basket_section(result: Mapping[str, Any]) -> str:
    k = result["protocol"]["k"]
    return (
        f"### {result['dataset']} — last basket\n\n"
        f"{result['n_customers']} customers with at least "
        f"{result['protocol']['min_baskets']} purchase days.\n\n"
        + metrics_table(result["methods"], [f"{name}@{k}" for name in LAST_BASKET_NAMES])
    )


def _is_rolling(result: Mapping[str, Any]) -> bool:
    return len(result["protocol"].get("cutoffs", [])) > 1


def targets_table(
    results: Sequence[Mapping[str, Any]],
    last_basket: Sequence[Mapping[str, Any]] = (),
    target_method: str = TARGET_METHOD,
    targets: Sequence[Target] = TARGETS,
) -> str:
    """Each target against `target_method` and the best other method (rolling results first)."""
    lines = [
        f"| data set | metric | target | `{target_method}` | met | best other method |",
        "|---|---|---:|---:|:---:|---|",
    ]
    for target in targets:
        pool = last_basket if target.last_basket else results
        chosen = [r for r in pool if r["dataset"] == target.dataset]
        if not target.last_basket:
            chosen.sort(key=lambda r: not _is_rolling(r))
        if not chosen:
            continue
        methods = chosen[0]["methods"]
        ours = _value(methods.get(target_method, {}).get(target.metric))
        others = {
            name: _value(values.get(target.metric))
            for name, values in methods.items()
            if name != target_method
        }
        best = _extreme(target.metric, list(others.values()))
        best_name = next((n for n, v in others.items() if v is not None and v == best), None)
        met = "—" if ours is None else ("yes" if target.met(ours) else "no")
        other = "—" if best_name is None else f"`{best_name}` {_format(target.metric, best)}"
        lines.append(
            f"| {target.dataset} | {target.metric} | {target.describe()} | "
            f"{_format(target.metric, ours)} | {met} | {other} |"
        )
    return "\n".join(lines)


def render_markdown(
    results: Sequence[Mapping[str, Any]],
    last_basket: Sequence[Mapping[str, Any]] = (),
    reliability_png: str | None = None,
    notes: str = "",
    target_method: str = TARGET_METHOD,
) -> str:
    """The whole docs/EVALUATION.md: protocol, one table per result, targets, diagram, notes."""
    parts = [
        "# Evaluation on real grocery data",
        "Generated by `services/evaluation/report.py` from the evaluation JSON; rerun "
        "`pantree evaluate` to refresh it. Best value per row in bold.",
        "## Protocol",
        PROTOCOL_TEXT,
        "## Results",
        *(_rolling_section(r) for r in results),
        *(_last_basket_section(r) for r in last_basket),
        "## Targets",
        "Complete Journey targets are on the rolling-cutoff means; Ta-Feng on the last basket.",
        targets_table(results, last_basket, target_method),
    ]
    if reliability_png:
        parts += [
            "## Reliability",
            "Mean predicted P(rebuy within 28 days) against the observed rebuy rate in 10 "
            "equal-width bins, Task-B pairs of all cutoffs pooled; the diagonal is perfect "
            "calibration.",
            f"![Reliability diagram]({reliability_png})",
        ]
    if notes.strip():
        parts += ["## Notes", notes.strip()]
    return "\n\n".join(parts) + "\n"


def plot_reliability(
    reliability: Mapping[str, Mapping[str, Mapping[str, Any] | None]],
    path: str | Path,
    title: str = "Reliability: P(rebuy within 28 days)",
) -> Path:
    """One panel per data set (dataset -> method -> bins), one line per method with
    probabilities; point area grows with the bin's pair count. Writes a PNG and returns its path."""
    # The object-oriented API renders with Agg and leaves pyplot's global state alone; imported
    # here so that the tables need no matplotlib (it comes with the `eval` extra).
    from matplotlib.figure import Figure  # noqa: PLC0415

    datasets = list(reliability)
    panels = max(len(datasets), 1)
    figure = Figure(figsize=(5.5 * panels, 5.2))
    axes = figure.subplots(1, panels, squeeze=False)
    for axis, dataset in zip(axes[0], datasets, strict=False):
        axis.plot([0, 1], [0, 1], color="0.6", linestyle="--", linewidth=1, label="perfect")
        for method, bins in reliability[dataset].items():
            if not bins:
                continue
            points = [
                (p, o, n)
                for p, o, n in zip(
                    bins["mean_predicted"], bins["observed_rate"], bins["count"], strict=True
                )
                if p is not None and o is not None and n > 0
            ]
            if not points:
                continue
            total = sum(n for _, _, n in points)
            xs, ys, counts = zip(*points, strict=True)
            (line,) = axis.plot(xs, ys, marker="", linewidth=1.4, label=method)
            axis.scatter(
                xs, ys, s=[12 + 400 * n / total for n in counts], color=line.get_color(), alpha=0.7
            )
        axis.set(
            xlim=(0, 1),
            ylim=(0, 1),
            xlabel="mean predicted probability",
            ylabel="observed rebuy rate",
            title=dataset,
        )
        axis.grid(alpha=0.3)
        axis.legend(loc="upper left", fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Fixed metadata so the same data gives the same file.
    figure.savefig(target, dpi=110, metadata={"Software": None})
    return target
