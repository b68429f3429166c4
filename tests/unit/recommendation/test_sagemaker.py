"""The scoring chain (SageMaker endpoint -> the model in-process -> heuristic) with real boto3
against a local SageMaker runtime that forwards to the real model server code: every failure ends
in the right fallback, and a recommendation always comes back saying who scored it."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pantree.domain.v1 import offer_pb2
from pantree.recommendation.v1 import recommendation_service_pb2 as pb
from prometheus_client import REGISTRY

from pantree_common import config as config_loader
from pantree_common.errors import ConfigError
from services.recommendation import model as model_module
from services.recommendation.config import RecommendationConfig
from services.recommendation.endpoint_config import SageMakerConfig
from services.recommendation.sagemaker import (
    BreakerState,
    CircuitBreaker,
    EndpointScorer,
    SageMakerRuntime,
)
from services.recommendation.servicer import RecommendationServicer
from tests.unit.recommendation.fake_sagemaker import (
    ENDPOINT,
    FakeRuntime,
    Fault,
    analyses,
    fake_runtime,
    model_error,
    throttled,
    trained_model,
    use_dummy_credentials,
)

SAGEMAKER = offer_pb2.SCORING_PATH_SAGEMAKER
LOCAL_MODEL = offer_pb2.SCORING_PATH_LOCAL_MODEL
HEURISTIC = offer_pb2.SCORING_PATH_HEURISTIC


class Context:
    """What the servicer reads of a gRPC call: its remaining deadline."""

    def __init__(self, time_remaining_s: float | None) -> None:
        self._time_remaining_s = time_remaining_s

    def time_remaining(self) -> float | None:
        return self._time_remaining_s


@pytest.fixture(autouse=True)
def aws_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    use_dummy_credentials(monkeypatch, tmp_path)


@pytest.fixture(autouse=True)
def _log_warnings(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="pantree.recommendation.sagemaker")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return model_module.save(trained_model(), tmp_path_factory.mktemp("model"))


@pytest.fixture
def runtime() -> Iterator[FakeRuntime]:
    with fake_runtime(trained_model()) as running:
        yield running


def endpoint_config(url: str, **overrides: str) -> SageMakerConfig:
    env = {
        "PANTREE_SAGEMAKER_ENDPOINT": ENDPOINT,
        "PANTREE_SAGEMAKER_ENDPOINT_URL": url,
        "PANTREE_SAGEMAKER_BACKOFF_S": "0.01",
        "PANTREE_SAGEMAKER_BREAKER_FAILURES": "3",
        **overrides,
    }
    return config_loader.load(SageMakerConfig, env)


def rank_request() -> pb.RankCandidatesRequest:
    [analysis], products = analyses(1)
    return pb.RankCandidatesRequest(analysis=analysis, products=list(products.values()))


async def servicer(
    url: str | None, model_dir: Path | None, **overrides: str
) -> RecommendationServicer:
    env: dict[str, str] = {}
    if url is not None:
        env.update(
            {
                "PANTREE_SAGEMAKER_ENDPOINT": ENDPOINT,
                "PANTREE_SAGEMAKER_ENDPOINT_URL": url,
                "PANTREE_SAGEMAKER_BACKOFF_S": "0.01",
            }
        )
    if model_dir is not None:
        env["PANTREE_MODEL_PATH"] = str(model_dir)
    env.update({f"PANTREE_{k.upper()}": v for k, v in overrides.items()})
    started = RecommendationServicer(config_loader.load(RecommendationConfig, env))
    await started.start()
    return started


async def recommend(
    service: RecommendationServicer, time_remaining_s: float | None = 5.0
) -> pb.RankCandidatesResponse:
    return await service.RankCandidates(rank_request(), Context(time_remaining_s))  # type: ignore[arg-type]


def fallbacks(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.reason for r in caplog.records if r.getMessage().startswith("sagemaker endpoint not")]  # type: ignore[attr-defined]


def scored(path: str) -> float:
    return REGISTRY.get_sample_value("pantree_offers_scored_total", {"path": path}) or 0.0


# --- the chain through the servicer -----------------------------------------------------------


async def test_the_endpoint_scores_with_the_in_process_model_numbers(
    runtime: FakeRuntime, model_dir: Path
) -> None:
    before = scored("sagemaker")
    remote = await recommend(await servicer(runtime.url, model_dir))
    local = await recommend(await servicer(None, model_dir))
    assert (remote.scored_by, local.scored_by) == (SAGEMAKER, LOCAL_MODEL)
    assert remote.offers
    assert list(remote.offers) == list(local.offers)
    assert scored("sagemaker") == before + 1
    [call] = runtime.calls
    assert (call["Content-Type"], call["Accept"]) == ("application/json", "application/json")
    assert call["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=testing/")
    assert "/us-east-1/sagemaker/aws4_request" in call["Authorization"]


@pytest.mark.parametrize(
    "fault",
    [
        throttled(),
        Fault(400, "ThrottlingException", {"message": "Rate exceeded"}),
        Fault(500, "InternalFailure", {"message": "internal failure"}),
        Fault(503, "ServiceUnavailable", {"message": "busy"}),
        model_error(503),
    ],
    ids=["429", "400-throttling", "500", "503", "model-error-503"],
)
async def test_throttling_and_5xx_are_retried_then_succeed(
    runtime: FakeRuntime, model_dir: Path, fault: Fault, caplog: pytest.LogCaptureFixture
) -> None:
    runtime.faults = [fault, fault]
    response = await recommend(await servicer(runtime.url, model_dir))
    assert response.scored_by == SAGEMAKER
    assert len(runtime.calls) == 3
    assert fallbacks(caplog) == []


async def test_persistent_5xx_falls_back_to_the_local_model_logged_once(
    runtime: FakeRuntime, model_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    runtime.always = Fault(500, "InternalFailure", {"message": "internal failure"})
    before = scored("local_model")
    response = await recommend(await servicer(runtime.url, model_dir))
    assert response.scored_by == LOCAL_MODEL
    assert response.offers
    assert len(runtime.calls) == 3  # the first attempt and PANTREE_SAGEMAKER_RETRIES (2)
    assert fallbacks(caplog) == ["InternalFailure 500: internal failure (after 3 attempts)"]
    assert scored("local_model") == before + 1


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        (model_error(400, "customers[0]: bad"), "ModelError: the container answered 400"),
        (Fault(400, "ValidationError", {"message": "bad input"}), "ValidationError 400"),
    ],
)
async def test_4xx_errors_are_not_retried(
    runtime: FakeRuntime,
    model_dir: Path,
    fault: Fault,
    reason: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    runtime.always = fault
    response = await recommend(await servicer(runtime.url, model_dir))
    assert response.scored_by == LOCAL_MODEL
    assert len(runtime.calls) == 1
    [logged] = fallbacks(caplog)
    assert logged.startswith(reason)


async def test_a_model_server_refusal_arrives_as_a_model_error(
    runtime: FakeRuntime, model_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The real model server's 400 reaches boto3 as SageMaker relays it (ModelError, 424)."""
    runtime.app.max_body_bytes = 10
    response = await recommend(await servicer(runtime.url, model_dir))
    assert response.scored_by == LOCAL_MODEL
    assert len(runtime.calls) == 1
    [logged] = fallbacks(caplog)
    assert logged.startswith("ModelError: the container answered 413")


async def test_a_wrong_endpoint_name_is_a_validation_error(
    runtime: FakeRuntime, model_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    service = await servicer(runtime.url, model_dir, sagemaker_endpoint="no-such-endpoint")
    assert (await recommend(service)).scored_by == LOCAL_MODEL
    [logged] = fallbacks(caplog)
    assert "Endpoint no-such-endpoint of account 123456789012 not found" in logged


async def test_a_slow_endpoint_falls_back_within_the_deadline(
    runtime: FakeRuntime, model_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    service = await servicer(runtime.url, model_dir)
    runtime.faults = [Fault(400, "ValidationError", {"message": "warm-up"})]
    await recommend(service)  # the first in-process scoring warms the model up
    runtime.always = Fault(delay_s=3.0)
    started = time.monotonic()
    response = await recommend(service, time_remaining_s=1.0)
    elapsed = time.monotonic() - started
    assert response.scored_by == LOCAL_MODEL
    assert len(runtime.calls) == 2  # a timeout is not retried: the time is spent
    # The call's timeout came from the deadline (1 s - the margin, rounded down to 0.1 s) ...
    assert fallbacks(caplog)[-1] in {"no answer within 0.8 s", "no answer within 0.9 s"}
    # ... so the answer came in time, long before the endpoint's 3 s (the slack is for the
    # in-process scoring on a loaded 2-core machine, where OpenMP threads can stall 0.2 s+).
    assert elapsed < 1.5


async def test_no_time_left_skips_the_endpoint(runtime: FakeRuntime, model_dir: Path) -> None:
    response = await recommend(await servicer(runtime.url, model_dir), time_remaining_s=0.15)
    assert response.scored_by == LOCAL_MODEL
    assert runtime.calls == []


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        (
            Fault(200, body=b'{"scored_by": "model", "customers": []}'),
            "its answer is malformed: customers: must answer all 1 customers",
        ),
        (Fault(200, body=b"<html>oops</html>"), "its answer is malformed: body: is not JSON"),
        (Fault(200, body=b"{}", content_type="text/html"), "it answered 'text/html', not JSON"),
    ],
)
async def test_a_malformed_answer_falls_back(
    runtime: FakeRuntime,
    model_dir: Path,
    fault: Fault,
    reason: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    runtime.always = fault
    response = await recommend(await servicer(runtime.url, model_dir))
    assert response.scored_by == LOCAL_MODEL
    [logged] = fallbacks(caplog)
    assert logged.startswith(reason)


async def test_an_unreachable_endpoint_falls_back(model_dir: Path) -> None:
    with fake_runtime(trained_model()) as stopped:
        url = stopped.url
    response = await recommend(await servicer(url, model_dir))
    assert response.scored_by == LOCAL_MODEL


async def test_no_model_anywhere_is_scored_by_the_heuristic(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with fake_runtime(None) as without_model:
        response = await recommend(await servicer(without_model.url, None))
    assert response.scored_by == HEURISTIC
    assert response.offers
    assert fallbacks(caplog) == ["it has no model (it answered scored_by=heuristic)"]
    assert (await recommend(await servicer(None, None))).offers == response.offers


async def test_an_endpoint_without_a_model_yields_to_the_local_model(model_dir: Path) -> None:
    with fake_runtime(None) as without_model:
        response = await recommend(await servicer(without_model.url, model_dir))
    assert response.scored_by == LOCAL_MODEL


async def test_a_dead_endpoint_without_a_local_model_leaves_the_heuristic(
    runtime: FakeRuntime,
) -> None:
    runtime.always = Fault(503, "ServiceUnavailable", {"message": "down"})
    response = await recommend(await servicer(runtime.url, None))
    assert response.scored_by == HEURISTIC
    assert response.offers


# --- the breaker ------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_breaker_opens_after_n_failures_and_half_opens_after_the_cooldown(
    runtime: FakeRuntime,
) -> None:
    clock = Clock()
    config = endpoint_config(runtime.url, PANTREE_SAGEMAKER_RETRIES="0")
    scorer = EndpointScorer(SageMakerRuntime(config), config, "local_model", clock)
    [analysis], products = analyses(1)
    runtime.always = Fault(500, "InternalFailure", {"message": "down"})
    for _ in range(3):
        assert scorer.predict(analysis, products, None) is None
    assert scorer.breaker.state is BreakerState.OPEN
    assert scorer.predict(analysis, products, None) is None
    assert len(runtime.calls) == 3  # open: the endpoint is left alone
    clock.now += config.breaker_cooldown_s
    assert scorer.breaker.state is BreakerState.HALF_OPEN
    assert scorer.predict(analysis, products, None) is None  # the trial fails: open again
    assert (len(runtime.calls), scorer.breaker.state) == (4, BreakerState.OPEN)
    clock.now += config.breaker_cooldown_s
    runtime.always = None
    assert scorer.predict(analysis, products, None) is not None  # the trial succeeds
    assert (len(runtime.calls), scorer.breaker.state) == (5, BreakerState.CLOSED)


def test_a_half_open_breaker_lets_one_trial_through() -> None:
    clock = Clock()
    breaker = CircuitBreaker("e", failures=1, cooldown_s=10, clock=clock)
    assert breaker.allow()
    breaker.record_failure()
    assert not breaker.allow()
    clock.now += 10
    assert breaker.allow()
    assert not breaker.allow()  # the trial is in flight
    breaker.record_success()
    assert breaker.allow() and breaker.allow()


def test_a_success_resets_the_count_of_failures() -> None:
    breaker = CircuitBreaker("e", failures=2, cooldown_s=10, clock=Clock())
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED


async def test_the_breaker_spares_a_dead_endpoint_through_the_servicer(
    runtime: FakeRuntime, model_dir: Path
) -> None:
    runtime.always = Fault(500, "InternalFailure", {"message": "down"})
    service = await servicer(
        runtime.url, model_dir, sagemaker_retries="0", sagemaker_breaker_failures="2"
    )
    for _ in range(4):
        assert (await recommend(service)).scored_by == LOCAL_MODEL
    assert len(runtime.calls) == 2


# --- settings ---------------------------------------------------------------------------------


def test_settings_load_nested_in_the_recommendation_config() -> None:
    config = config_loader.load(
        RecommendationConfig,
        {"PANTREE_SAGEMAKER_ENDPOINT": "pantree-prod", "PANTREE_SAGEMAKER_TIMEOUT_S": "0.5"},
    )
    assert (config.endpoint.endpoint, config.endpoint.timeout_s) == ("pantree-prod", 0.5)
    assert RecommendationConfig().endpoint == SageMakerConfig()
    assert SageMakerConfig().endpoint == ""  # off unless named


def test_the_region_falls_back_to_aws_region_then_us_east_1() -> None:
    assert SageMakerConfig().region_name({}) == "us-east-1"
    assert SageMakerConfig().region_name({"AWS_REGION": "eu-west-1"}) == "eu-west-1"
    assert SageMakerConfig(region="ap-south-1").region_name({"AWS_REGION": "x"}) == "ap-south-1"


@pytest.mark.parametrize(
    ("env_var", "value"),
    [
        ("PANTREE_SAGEMAKER_ENDPOINT", "not a name!"),
        ("PANTREE_SAGEMAKER_ENDPOINT_URL", "localhost:8080"),
        ("PANTREE_SAGEMAKER_TIMEOUT_S", "0"),
        ("PANTREE_SAGEMAKER_RETRIES", "-1"),
        ("PANTREE_SAGEMAKER_BREAKER_FAILURES", "0"),
    ],
)
def test_bad_settings_are_refused_by_name(env_var: str, value: str) -> None:
    with pytest.raises(ConfigError, match=env_var):
        config_loader.load(RecommendationConfig, {env_var: value})
