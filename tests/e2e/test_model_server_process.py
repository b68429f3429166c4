"""The model server as SageMaker starts it: the image's `serve` script with the argument `serve`,
settings from the environment, a saved model, SIGTERM to stop."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

from services.recommendation import model
from services.recommendation.invocation import request_from_analyses
from tests.e2e.conftest import BIN
from tests.unit.recommendation.fake_sagemaker import analyses, trained_model

SERVE = Path(__file__).resolve().parents[2] / "deploy" / "sagemaker" / "serve"


def read_log_until(process: subprocess.Popen[str], message: str) -> dict[str, Any]:
    """The first JSON log line with this message (the process's stdout)."""
    assert process.stdout is not None
    for line in process.stdout:
        record = json.loads(line) if line.startswith("{") else {}
        if record.get("msg") == message:
            return record
    raise AssertionError(f"the process ended without logging {message!r}")


def test_serve_answers_ping_and_invocations_then_stops_on_sigterm(tmp_path: Path) -> None:
    model_dir = model.save(trained_model(), tmp_path / "model")
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "SAGEMAKER_BIND_TO_PORT": "0",
        "PANTREE_MODEL_SERVER_HOST": "127.0.0.1",
        "SM_MODEL_DIR": str(model_dir),
    }
    process = subprocess.Popen(
        ["sh", str(SERVE), "serve"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
    )
    try:
        listening = read_log_until(process, "model server listening")
        url = f"http://127.0.0.1:{listening['port']}"
        with urllib.request.urlopen(f"{url}/ping", timeout=10) as ping:
            assert ping.status == 200
        body = request_from_analyses(*analyses(2)).to_json()
        invocation = urllib.request.Request(
            f"{url}/invocations", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(invocation, timeout=10) as answer:
            assert json.loads(answer.read())["scored_by"] == "model"
        process.send_signal(signal.SIGTERM)
        read_log_until(process, "model server stopped")
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
