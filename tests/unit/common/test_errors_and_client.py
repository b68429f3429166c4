"""The one error mapping and the one channel factory's policies."""

from __future__ import annotations

import time

import grpc
import pytest
from google.rpc import code_pb2, error_details_pb2

from pantree_common import context
from pantree_common.client import DEADLINE_MARGIN_S, call_timeout, retry_service_config
from pantree_common.descriptors import SERVICES
from pantree_common.errors import Collector, FieldViolation, InvalidArgument, UpstreamError
from pantree_common.interceptors import status_for


def test_invalid_argument_carries_every_violation_as_bad_request() -> None:
    errors = Collector()
    errors.add("months", "must be between 1 and 24, got 30")
    errors.add("seed_items[0].name", "must not be empty or blank")
    with pytest.raises(InvalidArgument) as caught:
        errors.raise_if_any()
    status = caught.value.to_status()
    assert status.code == code_pb2.INVALID_ARGUMENT
    detail = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(detail)
    assert [v.field for v in detail.field_violations] == ["months", "seed_items[0].name"]


def test_unexpected_exceptions_become_internal_without_details() -> None:
    status = status_for(RuntimeError("secret path /etc/shadow"))
    assert status.code == code_pb2.INTERNAL
    assert "shadow" not in status.message


def test_upstream_unknown_is_reported_as_internal_and_keeps_other_codes() -> None:
    assert (
        UpstreamError("vectors", grpc.StatusCode.UNKNOWN, "boom").code == grpc.StatusCode.INTERNAL
    )
    unavailable = UpstreamError("frequency", grpc.StatusCode.UNAVAILABLE, "connection refused")
    assert unavailable.code == grpc.StatusCode.UNAVAILABLE
    assert unavailable.message.startswith("frequency step failed (UNAVAILABLE)")


def test_upstream_invalid_argument_passes_the_field_violations_on() -> None:
    error = UpstreamError(
        "frequency",
        grpc.StatusCode.INVALID_ARGUMENT,
        "bad",
        [FieldViolation("history.quantities", "must be > 0")],
    )
    status = error.to_status()
    detail = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(detail)
    assert detail.field_violations[0].field == "history.quantities"


def test_retries_cover_only_idempotent_unary_methods() -> None:
    config = retry_service_config(SERVICES.values(), attempts=3)
    names = {
        (n["service"].rsplit(".", 1)[1], n["method"]) for n in config["methodConfig"][0]["name"]
    }
    assert ("FrequencyService", "AnalyzeHistory") in names
    assert ("VectorService", "UpsertCustomerProfile") in names
    assert ("SimulationService", "SimulateHistory") not in names, "server streams are not retried"
    assert ("OrchestratorService", "ProcessSeed") not in names
    policy = config["methodConfig"][0]["retryPolicy"]
    assert policy["retryableStatusCodes"] == ["UNAVAILABLE"]
    assert retry_service_config(SERVICES.values(), attempts=1) == {"methodConfig": []}


def test_outbound_timeout_is_bounded_by_the_inbound_deadline() -> None:
    assert call_timeout(None, 10.0) == 10.0
    assert call_timeout(3.0, 10.0) == 3.0
    token = context.deadline.set(time.monotonic() + 0.5)
    try:
        assert call_timeout(None, 10.0) == pytest.approx(0.5 - DEADLINE_MARGIN_S, abs=0.01)
    finally:
        context.deadline.reset(token)
    token = context.deadline.set(time.monotonic() - 1)
    try:
        assert call_timeout(None, 10.0) == 0.001, "an expired deadline still fails fast"
    finally:
        context.deadline.reset(token)
