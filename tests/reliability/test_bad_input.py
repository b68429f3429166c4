"""Bad input against a real server (`pantree serve all` in a process of its own): requests of
every method of every service built from the proto descriptors (Hypothesis), messages just
under and over the size limit and of 64 MB, and deeply nested bytes. No call may end UNKNOWN or
INTERNAL, oversized and malformed ones are refused before any work with the status that says
why, and the server is SERVING at the end. (`make fuzz` runs the same servers under atheris.)"""

from __future__ import annotations

import time
from collections.abc import Iterator

import grpc
import pytest
from google.protobuf import descriptor
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from pantree.orchestrator.v1 import orchestrator_service_pb2 as pb

from pantree_common.errors import bad_request_violations
from tests.conftest import unused_port
from tests.e2e.conftest import ServerProcess, start_server
from tests.histories import rhythmic_history
from tests.reliability.harness import millis, record_figures
from tests.reliability.protogen import methods, requests

LIMIT = 4 * 1024 * 1024  # PANTREE_MAX_MESSAGE_BYTES's default
EXAMPLES = 40
FORBIDDEN = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL}
RECOMMEND = "/pantree.orchestrator.v1.OrchestratorService/Recommend"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    running = start_server(tmp_path_factory.mktemp("bad-input"), unused_port())
    yield running
    assert running.stop() == 0, running.log_path.read_text()


@pytest.fixture(scope="module")
def channel(server: ServerProcess) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.address) as opened:
        yield opened
    with grpc.insecure_channel(server.address) as check:
        health = health_pb2_grpc.HealthStub(check).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert health.status == health_pb2.HealthCheckResponse.SERVING


def call(
    channel: grpc.Channel, path: str, method: descriptor.MethodDescriptor, body: bytes
) -> grpc.StatusCode:
    """Send raw request bytes to `path` and read the answer to its end; the status."""
    try:
        if method.server_streaming:
            for _ in channel.unary_stream(path)(body, timeout=10):
                pass
        else:
            channel.unary_unary(path)(body, timeout=10)
    except grpc.RpcError as error:
        return error.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


@pytest.mark.parametrize(("path", "method"), methods(), ids=[path for path, _ in methods()])
def test_no_request_of_any_method_gets_unknown_or_internal(
    channel: grpc.Channel, path: str, method: descriptor.MethodDescriptor
) -> None:
    @given(requests(method))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    def answers_with_a_defined_status(request: object) -> None:
        body = request.SerializeToString()  # type: ignore[attr-defined]
        assert call(channel, path, method, body) not in FORBIDDEN, request

    answers_with_a_defined_status()


def recommend_of(size: int) -> bytes:
    """A Recommend request of exactly `size` bytes, its customer id making up the bulk."""
    request = pb.RecommendRequest(history=rhythmic_history())
    request.history.customer_id = "x" * size
    excess = request.ByteSize() - size
    request.history.customer_id = "x" * (size - excess)
    while request.ByteSize() > size:  # the length prefix shrank by a byte or two
        request.history.customer_id = request.history.customer_id[:-1]
    assert abs(request.ByteSize() - size) <= 2
    return request.SerializeToString()


@pytest.mark.parametrize(
    ("size", "code"),
    [
        (LIMIT - 1024, grpc.StatusCode.INVALID_ARGUMENT),
        (LIMIT + 1024, grpc.StatusCode.RESOURCE_EXHAUSTED),
        (64 * 1024 * 1024, grpc.StatusCode.RESOURCE_EXHAUSTED),
    ],
    ids=["just under the limit", "just over the limit", "64 MB"],
)
def test_oversized_messages_are_refused_early(
    channel: grpc.Channel, size: int, code: grpc.StatusCode
) -> None:
    body = recommend_of(size)
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as caught:
        channel.unary_unary(RECOMMEND)(body, timeout=30)
    took = time.monotonic() - started
    assert caught.value.code() == code, caught.value
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        fields = [v.field for v in bad_request_violations(caught.value)]
        assert "history.customer_id" in fields
    assert took < 5
    record_figures(f"oversized-{size}", {"bytes": size, "code": code.name, "ms": millis(took)})


def nested_groups(depth: int) -> bytes:
    """`depth` unknown groups (field 1000) opened inside each other, then closed."""
    return b"\xc3\x3e" * depth + b"\xc4\x3e" * depth  # tags (1000 << 3) | 3 and | 4, as varints


@pytest.mark.parametrize("body", [nested_groups(101), nested_groups(500_000)], ids=["101", "500k"])
def test_deeply_nested_bytes_are_invalid_argument(channel: grpc.Channel, body: bytes) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        channel.unary_unary(RECOMMEND)(body, timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in bad_request_violations(caught.value)] == ["request"]


LONG = 3_000_000  # characters: under the message limit, far over any field's


@pytest.mark.parametrize(
    ("method", "request_", "field"),
    [
        ("Recommend", pb.RecommendRequest(history=rhythmic_history(), archetype="a" * LONG),
         "archetype"),
        ("ProcessSeed", pb.ProcessSeedRequest(seed_items=[{"name": "m" * LONG}]),
         "seed_items[0].name"),
    ],
    ids=["Recommend archetype", "ProcessSeed seed name"],
)  # fmt: skip
def test_long_strings_are_invalid_argument_naming_the_field(
    channel: grpc.Channel, method: str, request_: object, field: str
) -> None:
    path = f"/pantree.orchestrator.v1.OrchestratorService/{method}"
    body = request_.SerializeToString()  # type: ignore[attr-defined]
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as caught:
        if method == "ProcessSeed":
            list(channel.unary_stream(path)(body, timeout=10))
        else:
            channel.unary_unary(path)(body, timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in [v.field for v in bad_request_violations(caught.value)]
    assert time.monotonic() - started < 1
