"""`make bench` in miniature: the serving benchmark runs end to end and reports numbers.

Timings are not asserted (CI machines vary); what is checked is that every workload ran, the
tables hold numbers, and the section is appended with its date, machine and command. Built-in
catalog, hashing embedder and a small model keep it to about 20 seconds.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from services.recommendation import model as model_module
from tests.unit.recommendation.fake_sagemaker import trained_model

ROOT = Path(__file__).resolve().parents[2]
NUMBER = r"[\d,]+(\.\d+)?"


def test_the_serving_benchmark_runs_and_reports_numbers(tmp_path: Path) -> None:
    model_dir = model_module.save(trained_model(), tmp_path / "model")
    results = tmp_path / "BENCHMARKS.md"
    arguments = {
        "--seconds": "0.3",
        "--in-flight": "2",
        "--processes": "1",
        "--catalog": "builtin",
        "--embedder": "hashing",
        "--model": str(model_dir),
        "--data-dir": str(tmp_path / "data"),
        "--profile-seconds": "1",
        "--write": str(results),
    }
    command = [sys.executable, str(ROOT / "bench" / "grpc_ceiling.py"), "--profile"]
    command += [word for pair in arguments.items() for word in pair]
    done = subprocess.run(command, capture_output=True, text=True, timeout=110, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    text = results.read_text()
    assert re.search(r"### gRPC ceiling — \d{4}-\d\d-\d\d\n\nMachine: .+\nCommand: `", text)
    for workload in ("no-op unary", r"Recommend \(150 events\)"):
        assert re.search(rf"\| {workload} \| Python \| 2 \| {NUMBER} \| {NUMBER} \|", text)
    assert re.search(rf"\| Python client \| 8 \| {NUMBER} \| {NUMBER} \|", text)  # ProcessSeed
    assert "scored_by SCORING_PATH_LOCAL_MODEL" in text
    assert "Scoring the " in text
    assert "#### Profile: Recommend (150 events)" in text
    assert "#### Profile: ProcessSeed" in text
