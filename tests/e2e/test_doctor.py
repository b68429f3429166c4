"""`pantree doctor` as operators run it: against a live mesh, and against nothing."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pantree_common
from pantree_common.descriptors import SERVICES
from services.mesh import STEPS
from tests.e2e.conftest import BIN, ServerProcess


def doctor(tmp_path: Path, *args: str) -> tuple[int, dict[str, Any]]:
    result = subprocess.run(
        [str(BIN / "pantree"), "doctor", "--json", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,  # no stray .env
        env={
            **os.environ,
            "PANTREE_DATA_DIR": str(tmp_path / "data"),
            "PANTREE_EMBEDDER": "hashing",
            "PANTREE_CATALOG": "builtin",  # instant; the CJ catalog has its own tests
        },
    )
    assert result.stdout.count("\n") == 1, result.stdout + result.stderr
    return result.returncode, json.loads(result.stdout)


def test_doctor_passes_against_the_running_mesh(
    mesh_process: ServerProcess, tmp_path: Path
) -> None:
    code, report = doctor(tmp_path, "--target", mesh_process.address)
    assert report["ok"] is True, report
    assert code == 0
    checks = {c["name"]: c for c in report["checks"]}
    for step in STEPS:
        check = checks[f"{step} service"]
        assert check["status"] == "ok", check
        assert SERVICES[step].full_name in check["detail"]
    assert checks["server"]["status"] == "ok"
    assert checks["server version"]["detail"].startswith(f"Pantree {pantree_common.__version__}")
    assert "vector store" not in checks  # the server owns the store; its health covers it


def test_doctor_fails_when_nothing_listens(free_port: int, tmp_path: Path) -> None:
    code, report = doctor(tmp_path, "--target", f"127.0.0.1:{free_port}")
    assert code == 1
    assert report["ok"] is False
    local_names = {"configuration", "data directory", "catalog", "embedder", "language model"}
    mesh = [c for c in report["checks"] if c["name"] not in local_names]
    assert len(mesh) == len(STEPS) + 2
    assert all(c["status"] == "failed" and "cannot reach" in c["detail"] for c in mesh), mesh
    local = [c for c in report["checks"] if c not in mesh]
    assert all(c["status"] == "ok" for c in local), local
