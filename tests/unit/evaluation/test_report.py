"""docs/EVALUATION.md content and the reliability diagram from evaluation results."""

from __future__ import annotations

from pathlib import Path

import pytest

from pantree_common.datasets.transactions import Transactions
from services.evaluation import baselines, harness, protocol, report
from tests.unit.evaluation.synthetic import random_shoppers


@pytest.fixture(scope="module")
def data() -> Transactions:
    return random_shoppers()


def test_markdown_lists_every_method_side_by_side(data: Transactions) -> None:
    rolling = harness.evaluate(data, baselines.baselines(), protocol.rolling_cutoffs(data, 14))
    rolling["dataset"] = "completejourney"
    last = harness.evaluate_last_basket(data, [baselines.PTopFreq(), baselines.GPTopFreq()])
    last["dataset"] = "tafeng"
    text = report.render_markdown([rolling], [last], reliability_png="evaluation/reliability.png")
    assert text.startswith("# Evaluation")
    assert "## Protocol" in text and "[T, T + 28)" in text
    header = (
        "| metric | `p_topfreq` | `g_topfreq` | `most_recent` | `median_gap` | `seed_heuristic` |"
    )
    assert header in text
    for metric in harness.METRIC_NAMES:
        assert f"\n| {metric} |" in text
    assert "| recall@10 | " in text and "| ndcg_uncapped@10 |" in text
    # most_recent has no probabilities: a dash, not a number.
    auc_row = next(line for line in text.splitlines() if line.startswith("| auc |"))
    assert auc_row.split("|")[4].strip() == "—"
    # Targets: no `pantree` method here, so nothing is claimed as met.
    assert "| completejourney | rep_recall@10 | ≥ 0.28 | — | — | `p_topfreq`" in text
    assert "| tafeng | recall@10 | ≥ 0.14 | — | — | `p_topfreq` 0.8833 |" in text
    assert "![Reliability diagram](evaluation/reliability.png)" in text


def test_targets_compare_the_target_method() -> None:
    result = {
        "dataset": "completejourney",
        "protocol": {"cutoffs": ["a", "b"]},
        "n_customers": 1,
        "methods": {
            "pantree": {"auc": {"mean": 0.81, "sd": 0.01}, "ece": {"mean": 0.05, "sd": 0.0}},
            "p_topfreq": {"auc": {"mean": 0.70, "sd": 0.01}, "ece": {"mean": 0.2, "sd": 0.0}},
        },
    }
    table = report.targets_table([result])
    assert "| completejourney | auc | ≥ 0.8 | 0.8100 | yes | `p_topfreq` 0.7000 |" in table
    assert "| completejourney | ece | ≤ 0.03 | 0.0500 | no | `p_topfreq` 0.2000 |" in table


def test_best_value_per_row_is_bold() -> None:
    table = report.metrics_table(
        {
            "a": {"ece": {"mean": 0.1, "sd": 0.0}, "auc": {"mean": 0.6, "sd": 0.02}},
            "b": {"ece": {"mean": 0.2, "sd": 0.0}, "auc": {"mean": 0.7, "sd": 0.0}},
        },
        ["ece", "auc"],
    )
    assert "| ece | **0.1000** | 0.2000 |" in table
    assert "| auc | 0.6000 ± 0.0200 | **0.7000** |" in table


def test_reliability_diagram_png(data: Transactions, tmp_path: Path) -> None:
    run = harness.run_evaluation(data, baselines.baselines(), protocol.rolling_cutoffs(data, 14))
    assert run.reliability["most_recent"] is None
    path = report.plot_reliability({"synthetic": run.reliability}, tmp_path / "fig" / "r.png")
    content = path.read_bytes()
    assert content.startswith(b"\x89PNG") and len(content) > 5_000
    again = report.plot_reliability({"synthetic": run.reliability}, tmp_path / "r2.png")
    assert again.read_bytes() == content
