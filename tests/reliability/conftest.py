"""The long reliability runs (chaos, soak, fuzz) run only when their make target asks for them
(PANTREE_LONG_TESTS=chaos,...); `make test` runs the fast cases beside them and leaves the long
ones out of the collection (deselected, not skipped: nothing is missing, they have their own
targets)."""

from __future__ import annotations

import os

import pytest

LONG_RUNS = ("chaos", "soak", "fuzz")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    wanted = os.environ.get("PANTREE_LONG_TESTS", "").split(",")
    unwanted = [run for run in LONG_RUNS if run not in wanted]
    deselected = [i for i in items if any(i.get_closest_marker(run) for run in unwanted)]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [i for i in items if i not in deselected]
