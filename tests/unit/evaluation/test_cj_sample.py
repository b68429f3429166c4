"""A fixed sample of Complete Journey evaluates to the committed JSON, to the 4th decimal.

Regenerate the expected file only on purpose (a change of protocol or model) with
`PANTREE_REGENERATE_GOLDEN=1 pytest tests/unit/evaluation/test_cj_sample.py` and review the diff.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pantree_common.datasets.completejourney import load_completejourney
from pantree_common.datasets.transactions import Transactions
from services.evaluation.harness import evaluate
from services.evaluation.job import methods
from services.evaluation.protocol import cutoff_at

GOLDEN = Path(__file__).resolve().parents[2] / "data" / "cj_sample_day336.json"
SAMPLE_CUSTOMERS = 300


def first_customers(transactions: Transactions, count: int) -> Transactions:
    keep = transactions.customer < count
    return Transactions(
        f"{transactions.name}-first-{count}",
        transactions.customer_ids,
        transactions.items,
        transactions.customer[keep],
        transactions.item[keep],
        transactions.day[keep],
        transactions.quantity[keep],
        transactions.price[keep],
    )


def assert_close(actual: Any, expected: Any, path: str = "") -> None:
    if isinstance(expected, dict):
        assert set(actual) == set(expected), path
        for key in expected:
            assert_close(actual[key], expected[key], f"{path}.{key}")
    elif isinstance(expected, list):
        assert len(actual) == len(expected), path
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert_close(a, e, f"{path}[{i}]")
    elif isinstance(expected, float) and isinstance(actual, float):
        assert math.isclose(actual, expected, abs_tol=5e-5), f"{path}: {actual} != {expected}"
    else:
        assert actual == expected, f"{path}: {actual!r} != {expected!r}"


def test_the_sample_reproduces_its_evaluation() -> None:
    sample = first_customers(load_completejourney(), SAMPLE_CUSTOMERS)
    assert np.unique(sample.customer).size == SAMPLE_CUSTOMERS
    result = evaluate(sample, methods(), [cutoff_at(sample, 336)])
    if os.environ.get("PANTREE_REGENERATE_GOLDEN") == "1":
        GOLDEN.write_text(json.dumps(result, indent=2) + "\n")
        pytest.fail(f"regenerated {GOLDEN}; review and commit it, then rerun without the flag")
    assert_close(result, json.loads(GOLDEN.read_text()))
