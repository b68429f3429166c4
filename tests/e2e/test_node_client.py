"""A non-Python client built from the .proto files alone: Node.js with @grpc/grpc-js and
@grpc/proto-loader (tests/e2e/node_client/client.mjs) against a `pantree serve all` process.

node and node_modules are installed by `make setup` (npm ci), so their absence is a failure,
not a skip."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import ServerProcess

ROOT = Path(__file__).resolve().parents[2]
CLIENT = ROOT / "tests" / "e2e" / "node_client" / "client.mjs"
REQUIRED_PACKAGES = ("@grpc/grpc-js", "@grpc/proto-loader")


@pytest.fixture(scope="module")
def node() -> str:
    executable = shutil.which("node")
    if executable is None:
        pytest.fail("`node` is not on PATH: install Node.js (the Makefile needs npm anyway)")
    missing = [p for p in REQUIRED_PACKAGES if not (ROOT / "node_modules" / p).is_dir()]
    if missing:
        pytest.fail(f"node_modules lacks {', '.join(missing)}: run `make setup` (npm ci)")
    return executable


def run_client(node: str, address: str, command: str) -> tuple[int, dict[str, Any]]:
    result = subprocess.run(
        [node, str(CLIENT), address, command],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    lines = result.stdout.splitlines()
    context = f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert len(lines) == 1, f"expected one JSON line; {context}"
    return result.returncode, json.loads(lines[0])


def test_node_client_recommend(node: str, mesh_process: ServerProcess) -> None:
    code, summary = run_client(node, mesh_process.address, "recommend")
    assert code == 0, summary
    assert summary["scored_by"] == "SCORING_PATH_HEURISTIC"
    assert len(summary["offers"]) >= 1
    # The weekly product ranks first and is offered every week.
    assert summary["offers"][0] == {"product_id": "p-1001", "delivery_interval_days": 7}


def test_node_client_streams_process_seed(node: str, mesh_process: ServerProcess) -> None:
    code, summary = run_client(node, mesh_process.address, "process-seed")
    assert code == 0, summary
    events = summary["events"]
    assert events[:2] == ["resolution", "progress"]
    assert events.count("month") == 4
    assert summary["month_indexes"] == [1, 2, 3, 4]
    assert set(events) <= {
        "resolution",
        "progress",
        "month",
        "analysis",
        "recommendations",
        "summary",
    }
    assert events.count("analysis") == events.count("recommendations") == 1
    assert events[-1] == "summary" and events.count("summary") == 1
    last_month = len(events) - 1 - events[::-1].index("month")
    analysis, recommendations = events.index("analysis"), events.index("recommendations")
    assert last_month < analysis < recommendations < len(events) - 1


def test_node_client_gets_invalid_argument_for_a_bad_archetype(
    node: str, mesh_process: ServerProcess
) -> None:
    code, summary = run_client(node, mesh_process.address, "bad-seed")
    assert code == 2, summary
    assert summary["error"] == "INVALID_ARGUMENT"
    assert "archetype" in summary["details"]
