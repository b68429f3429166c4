"""The SageMaker container contract over real HTTP on port 0: /ping, /invocations and every error
answer, the same numbers as in-process scoring, the model directory rules and the image."""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pantree_common import config as config_loader
from services.recommendation import invocation
from services.recommendation.invocation import invoke, request_from_analyses
from services.recommendation.model import SubscriptionModel
from services.recommendation.model_server import (
    MAX_BODY_BYTES,
    ModelServer,
    ModelServerConfig,
    create_http_server,
    model_directory,
)
from tests.unit.recommendation.fake_sagemaker import analyses, trained_model
from tests.unit.recommendation.test_invocation import to_csv

ROOT = Path(__file__).resolve().parents[3]


class Served:
    """A model server on a free port."""

    def __init__(self, app: ModelServer) -> None:
        self.app = app
        self.http = create_http_server(app, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}"
        self.thread = threading.Thread(target=self.http.serve_forever, args=(0.01,), daemon=True)
        self.thread.start()

    def call(
        self, method: str, path: str, body: bytes | None = None, **headers: str
    ) -> tuple[int, dict[str, str], Any]:
        request = urllib.request.Request(self.url + path, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, dict(response.headers), json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), json.loads(error.read())

    def invoke(self, body: bytes, content_type: str = invocation.JSON) -> tuple[int, Any]:
        status, _, answer = self.call(
            "POST", "/invocations", body, **{"Content-Type": content_type}
        )
        return status, answer

    def stop(self) -> None:
        self.http.shutdown()
        self.http.server_close()
        self.app.close()


@pytest.fixture
def with_model() -> Iterator[Served]:
    served = Served(ModelServer(trained_model()))
    yield served
    served.stop()


@pytest.fixture
def without_model() -> Iterator[Served]:
    served = Served(ModelServer(None))
    yield served
    served.stop()


def test_ping_is_200_with_a_model_and_503_without(
    with_model: Served, without_model: Served
) -> None:
    status, headers, body = with_model.call("GET", "/ping")
    assert (status, headers["Content-Type"]) == (200, "application/json")
    assert body["model"]["dataset"] == "synthetic"
    status, _, body = without_model.call("GET", "/ping")
    assert status == 503
    assert "heuristic" in body["status"]


def test_invocations_over_http_equal_in_process_scoring(with_model: Served) -> None:
    request = request_from_analyses(*analyses(4))
    status, answer = with_model.invoke(request.to_json())
    assert status == 200
    assert answer == json.loads(invoke(trained_model(), request).to_json())
    assert answer["scored_by"] == "model"
    status, from_csv = with_model.invoke(to_csv(request), "text/csv")
    assert (status, from_csv) == (200, answer)


def test_without_a_model_invocations_say_the_heuristic_scored_them(
    without_model: Served,
) -> None:
    request = request_from_analyses(*analyses(1))
    status, answer = without_model.invoke(request.to_json())
    assert status == 200
    assert (answer["scored_by"], answer["model"]) == ("heuristic", None)
    assert answer == json.loads(invoke(None, request).to_json())


def test_an_invalid_request_is_400_naming_the_field(with_model: Served) -> None:
    body = json.loads(request_from_analyses(*analyses(1)).to_json())
    body["customers"][0]["items"][3]["recency_weight"] = -1
    status, answer = with_model.invoke(json.dumps(body).encode())
    assert status == 400
    assert answer["field"] == "customers[0].items[3].recency_weight"
    assert answer["error"].startswith("customers[0].items[3].recency_weight: must be")
    assert with_model.invoke(b"{not json")[0] == 400


def test_a_body_over_6_mb_is_413(with_model: Served) -> None:
    status, answer = with_model.invoke(b" " * (MAX_BODY_BYTES + 1))
    assert status == 413
    assert "6,291,456" in answer["error"]


def test_other_content_types_are_415_and_other_accepts_406(with_model: Served) -> None:
    status, answer = with_model.invoke(b"{}", "text/plain")
    assert status == 415
    assert "application/json" in answer["error"]
    status, _, _ = with_model.call(
        "POST", "/invocations", b"{}", **{"Content-Type": "application/json", "Accept": "text/html"}
    )
    assert status == 406
    status, _, _ = with_model.call(
        "POST",
        "/invocations",
        b'{"customers": []}',
        **{"Content-Type": "application/json", "Accept": "text/html, application/json;q=0.9"},
    )
    assert status == 200


def test_unknown_paths_are_404_and_wrong_methods_405(with_model: Served) -> None:
    status, _, answer = with_model.call("GET", "/models")
    assert status == 404
    assert "/ping" in answer["error"]
    status, headers, _ = with_model.call("GET", "/invocations")
    assert (status, headers["Allow"]) == (405, "POST")
    assert with_model.call("POST", "/ping", b"")[0] == 405


def test_an_invocation_past_the_timeout_is_503(monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()

    def slow(model: SubscriptionModel | None, request: Any) -> Any:
        release.wait(5)
        return invoke(model, request)

    monkeypatch.setattr(invocation, "invoke", slow)
    served = Served(ModelServer(None, timeout_s=0.2))
    try:
        started = time.monotonic()
        status, answer = served.invoke(b'{"customers": []}')
        assert time.monotonic() - started < 2
    finally:
        release.set()
        served.stop()
    assert status == 503
    assert answer == {"error": "the invocation took longer than 0.2 s"}


def test_a_bug_is_500_without_a_stack_trace(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(model: SubscriptionModel | None, request: Any) -> Any:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(invocation, "invoke", broken)
    app = ModelServer(None)
    try:
        reply = app.handle("POST", "/invocations", b'{"customers": []}', invocation.JSON)
    finally:
        app.close()
    assert reply.status == 500
    assert b"secret" not in reply.body and b"Traceback" not in reply.body
    assert json.loads(reply.body)["error"].startswith("the model server failed")


def test_the_model_directory_follows_sagemaker_first(tmp_path: Path) -> None:
    sagemaker_dir = tmp_path / "opt-ml-model"
    sagemaker_dir.mkdir()
    assert model_directory("", "", sagemaker_dir) is None
    assert model_directory("", "/models/cj", sagemaker_dir) == Path("/models/cj")
    (sagemaker_dir / "model_card.json").write_text("{}")
    assert model_directory("", "/models/cj", sagemaker_dir) == sagemaker_dir
    assert model_directory("/sm", "/models/cj", sagemaker_dir) == Path("/sm")


def test_the_port_comes_from_sagemaker_bind_to_port() -> None:
    assert config_loader.load(ModelServerConfig, {}).port == 8080
    config = config_loader.load(
        ModelServerConfig, {"SAGEMAKER_BIND_TO_PORT": "9090", "SM_MODEL_DIR": "/opt/ml/model"}
    )
    assert (config.port, config.sm_model_dir, config.timeout_s) == (9090, "/opt/ml/model", 60.0)
    with pytest.raises(Exception, match="PANTREE_MODEL_SERVER_TIMEOUT_S"):
        config_loader.load(ModelServerConfig, {"PANTREE_MODEL_SERVER_TIMEOUT_S": "0"})


def test_the_image_serves_when_sagemaker_runs_it_with_serve() -> None:
    stages = (ROOT / "Dockerfile").read_text().split("\nFROM ")
    dockerfile = next(s for s in stages if s.startswith("python-base AS model-server\n"))
    assert re.search(r"^ENTRYPOINT \[\"serve\"\]$", dockerfile, re.MULTILINE)
    assert re.search(r"^EXPOSE 8080$", dockerfile, re.MULTILINE)
    assert "SAGEMAKER_BIND_TO_PORT=8080" in dockerfile
    script = ROOT / "deploy" / "sagemaker" / "serve"
    assert "deploy/sagemaker/serve /usr/local/bin/serve" in dockerfile
    assert script.stat().st_mode & 0o111
    text = script.read_text()
    assert text.startswith("#!/bin/sh")
    assert 'if [ "$1" = "serve" ]' in text
    assert 'exec pantree model-server "$@"' in text
