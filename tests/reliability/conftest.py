"""The long reliability runs (chaos, soak, fuzz) run only when their make target asks for them
(PANTREE_LONG_TESTS=chaos,...); `make test` runs the fast cases beside them."""

from __future__ import annotations

import os

import pytest

LONG_RUNS = ("chaos", "soak", "fuzz")


def pytest_runtest_setup(item: pytest.Item) -> None:
    wanted = os.environ.get("PANTREE_LONG_TESTS", "").split(",")
    for run in LONG_RUNS:
        if item.get_closest_marker(run) and run not in wanted:
            pytest.skip(f"a long {run} run: `make {run}`")
