"""Authentication and TLS on a real mesh: the auth matrix over TLS, mutual TLS at the handshake,
and grpcurl with a token, all on loopback with a CA made for the run (tests/pki.py)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2
from pantree.orchestrator.v1 import orchestrator_service_pb2 as pb

from pantree_common import config as config_loader
from pantree_common.auth import new_token, required_scopes
from pantree_common.client import ClientConfig, create_channel
from pantree_common.descriptors import SERVICES
from pantree_common.logging import JsonFormatter
from pantree_common.server import ServerConfig, create_server
from services.mesh import STEPS
from tests.e2e.conftest import BIN
from tests.e2e.test_mesh_process import readme_grpcurl_commands
from tests.histories import rhythmic_history
from tests.pki import SERVER_NAME, Pki, make_pki
from tests.service.conftest import Mesh, seed_request, start_mesh, stop_mesh

REFLECTION = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED
PERMISSION_DENIED = grpc.StatusCode.PERMISSION_DENIED
OK = grpc.StatusCode.OK
UNAVAILABLE = grpc.StatusCode.UNAVAILABLE
# One token per kind of caller; the orchestrator's own reaches the steps.
CALLERS = {
    "backend": "recommend",
    "app": "process_seed",
    "operator": "admin",
    "orchestrator": "internal",
}


@dataclass
class SecureMesh:
    mesh: Mesh
    pki: Pki
    tokens: dict[str, str]  # caller name -> plaintext token
    secrets: list[str]  # every token and every digest written to the tokens file


@pytest.fixture
async def secure_mesh(tmp_path: Path) -> AsyncIterator[SecureMesh]:
    pki = make_pki(tmp_path)
    tokens, lines = {}, []
    for name, scopes in CALLERS.items():
        tokens[name], line = new_token(scopes, name)
        lines.append(line)
    tokens_file = tmp_path / "tokens"
    tokens_file.write_text("\n".join(lines) + "\n")
    env = {
        "PANTREE_TLS_CERT_FILE": str(pki.server_cert),
        "PANTREE_TLS_KEY_FILE": str(pki.server_key),
        "PANTREE_AUTH_TOKENS_FILE": str(tokens_file),
        "PANTREE_TLS_CA_FILE": str(pki.ca),
        "PANTREE_TLS_SERVER_NAME": SERVER_NAME,  # the orchestrator dials 127.0.0.1
        "PANTREE_AUTH_CLIENT_TOKEN": tokens["orchestrator"],
    }
    mesh = await start_mesh(tmp_path, STEPS, None, **env)
    await mesh.channel.close(grace=None)
    mesh.channel = grpc.aio.secure_channel(
        mesh.server.address, grpc.ssl_channel_credentials(pki.ca.read_bytes())
    )
    digests = [line.split()[0].removeprefix("sha256:") for line in lines]
    yield SecureMesh(mesh, pki, tokens, [*tokens.values(), *digests])
    await stop_mesh(mesh)


def _valid_request(path: str, input_type: Any) -> Message:
    """Orchestrator requests that succeed; an empty message for the rest (their valid case only
    has to get past authentication, whatever the handler then says)."""
    known: dict[str, Message] = {
        "/pantree.orchestrator.v1.OrchestratorService/ProcessSeed": seed_request(months=1),
        "/pantree.orchestrator.v1.OrchestratorService/Recommend": pb.RecommendRequest(
            history=rhythmic_history()
        ),
    }
    return known.get(path) or message_factory.GetMessageClass(input_type)()


async def _call(
    channel: grpc.aio.Channel, path: str, method: MethodDescriptor | None, metadata: Any
) -> tuple[grpc.StatusCode, str]:
    """Call `path` and return its status code and details (OK, "" on success)."""
    try:
        if method is None:  # server reflection: a bidirectional stream
            call = channel.stream_stream(
                path,
                request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
                response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
            )
            request = reflection_pb2.ServerReflectionRequest(list_services="")
            async for _ in call(iter([request]), metadata=metadata, timeout=10):
                pass
            return OK, ""
        request = _valid_request(path, method.input_type)
        output = message_factory.GetMessageClass(method.output_type)
        if method.server_streaming:
            stream = channel.unary_stream(
                path,
                request_serializer=type(request).SerializeToString,
                response_deserializer=output.FromString,
            )
            async for _ in stream(request, metadata=metadata, timeout=30):
                pass
        else:
            unary = channel.unary_unary(
                path,
                request_serializer=type(request).SerializeToString,
                response_deserializer=output.FromString,
            )
            await unary(request, metadata=metadata, timeout=30)
    except grpc.aio.AioRpcError as exc:
        return exc.code(), exc.details() or ""
    return OK, ""


def _methods() -> list[tuple[str, MethodDescriptor | None]]:
    methods: list[tuple[str, MethodDescriptor | None]] = [
        (f"/{service.full_name}/{method.name}", method)
        for service in SERVICES.values()
        for method in service.methods
    ]
    return [*methods, (REFLECTION, None)]


def _caller_with(tokens: dict[str, str], path: str, allowed: bool) -> str:
    """A caller whose scopes cover `path` (allowed) or do not."""
    required = required_scopes(path) or frozenset()
    for name, scope in CALLERS.items():
        if (scope in required) == allowed:
            return tokens[name]
    raise AssertionError(f"no caller {'with' if allowed else 'without'} the scope of {path}")


async def test_auth_matrix_over_tls_lets_no_one_in_who_does_not_belong(
    secure_mesh: SecureMesh, caplog: pytest.LogCaptureFixture
) -> None:
    """No token, malformed headers, an unknown token, a token without the scope and the right
    token, against every method of every service (and reflection): UNAUTHENTICATED x3,
    PERMISSION_DENIED, then OK for the orchestrator and reflection (the steps' valid case must
    only get past authentication: their empty requests are refused by the handlers)."""
    caplog.set_level(logging.DEBUG)
    tokens = secure_mesh.tokens
    stranger, _ = new_token("admin", "stranger")  # well-formed, never configured
    cases: list[tuple[str, Sequence[tuple[str, str]], grpc.StatusCode | None]] = []
    mismatches, unexpected_ok, details = [], 0, []
    ran = 0
    for path, method in _methods():
        allowed = _caller_with(tokens, path, allowed=True)
        cases = [
            ("no token", (), UNAUTHENTICATED),
            ("malformed: Basic", (("authorization", f"Basic {allowed}"),), UNAUTHENTICATED),
            ("malformed: no token", (("authorization", "Bearer "),), UNAUTHENTICATED),
            ("malformed: two", (("authorization", f"Bearer {allowed} x"),), UNAUTHENTICATED),
            ("wrong token", (("authorization", f"Bearer {stranger}"),), UNAUTHENTICATED),
            (
                "wrong scope",
                (("authorization", f"Bearer {_caller_with(tokens, path, allowed=False)}"),),
                PERMISSION_DENIED,
            ),
            (
                "valid",
                (("authorization", f"bearer {allowed}"),),  # the scheme is case-insensitive
                OK if path.startswith("/pantree.orchestrator") or method is None else None,
            ),
        ]
        for case, metadata, expected in cases:
            code, text = await _call(secure_mesh.mesh.channel, path, method, metadata)
            ran += 1
            details.append(text)
            if code == OK and expected not in (OK, None):
                unexpected_ok += 1
            denied = code in (UNAUTHENTICATED, PERMISSION_DENIED)
            if (code != expected) if expected is not None else denied:
                mismatches.append((path, case, code.name, text))
    print(f"auth matrix: {ran} cases, {unexpected_ok} unexpected OKs, {len(mismatches)} mismatches")
    assert unexpected_ok == 0
    assert mismatches == []
    assert ran == len(_methods()) * len(cases)

    formatter = JsonFormatter()
    logged = [formatter.format(record) for record in caplog.records]
    assert any("rpc refused" in line for line in logged)
    for secret in secure_mesh.secrets:
        assert not [text for text in details if secret in text]
        assert not [line for line in logged if secret in line]


async def test_health_needs_no_token(secure_mesh: SecureMesh) -> None:
    response = await health_pb2_grpc.HealthStub(secure_mesh.mesh.channel).Check(
        health_pb2.HealthCheckRequest(service=SERVICES["orchestrator"].full_name), timeout=5
    )
    assert response.status == health_pb2.HealthCheckResponse.SERVING


async def test_the_channel_factory_sends_the_configured_token_over_tls(
    secure_mesh: SecureMesh,
) -> None:
    client = ClientConfig(
        tls_ca_file=str(secure_mesh.pki.ca), auth_token=secure_mesh.tokens["backend"]
    )
    async with create_channel(secure_mesh.mesh.server.address, client, 4 << 20) as channel:
        response = await channel.unary_unary(
            "/pantree.orchestrator.v1.OrchestratorService/Recommend",
            request_serializer=pb.RecommendRequest.SerializeToString,
            response_deserializer=pb.RecommendResponse.FromString,
        )(pb.RecommendRequest(history=rhythmic_history()), timeout=10)
    assert response.offers


async def test_readme_grpcurl_commands_with_tls_and_tokens_work_as_written(
    secure_mesh: SecureMesh,
) -> None:
    """README's grpcurl lines for TLS and tokens. Reflection needs admin, so the app's token
    alone cannot list."""
    pki = secure_mesh.pki
    paths = {
        ".venv/bin/": f"{BIN}/",
        "localhost:50051": secure_mesh.mesh.server.address,
        "certs/ca.pem": str(pki.ca),
        "certs/client.pem": str(pki.client_cert),
        "certs/client-key.pem": str(pki.client_key),
    }
    env = {"ADMIN_TOKEN": secure_mesh.tokens["operator"], "APP_TOKEN": secure_mesh.tokens["app"]}

    async def run(command: str) -> tuple[int, str]:
        for written, actual in paths.items():
            command = command.replace(written, actual)
        process = await asyncio.create_subprocess_exec(
            "bash",
            "-c",
            command,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await process.communicate()
        return process.returncode or 0, output.decode()

    commands = [c for c in readme_grpcurl_commands() if "-cacert" in c]
    assert len(commands) >= 3
    for command in commands:
        code, output = await run(command)
        assert code == 0, f"{command}\n{output}"
        if command.endswith(" list"):
            assert "pantree.orchestrator.v1.OrchestratorService" in output
            code, output = await run(command.replace("ADMIN_TOKEN", "APP_TOKEN"))
            assert code != 0 and "PermissionDenied" in output, output
        if command.endswith("ListArchetypes"):
            assert json.loads(output)["archetypes"]


async def _health(channel: grpc.aio.Channel) -> grpc.StatusCode:
    async with channel:
        try:
            await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=5
            )
        except grpc.aio.AioRpcError as exc:
            return exc.code()
    return OK


async def test_mutual_tls_refuses_clients_without_a_certificate_at_the_handshake(
    tmp_path: Path,
) -> None:
    pki = make_pki(tmp_path)
    config = config_loader.load(
        ServerConfig,
        {
            "PORT": "0",
            "PANTREE_HOST": "127.0.0.1",
            "PANTREE_METRICS_PORT": "0",
            "PANTREE_TLS_CERT_FILE": str(pki.server_cert),
            "PANTREE_TLS_KEY_FILE": str(pki.server_key),
            "PANTREE_TLS_CLIENT_CA_FILE": str(pki.ca),
        },
    )
    server = create_server(config, lambda _: [])
    await server.start()
    try:
        ca = pki.ca.read_bytes()
        address = server.address
        with_cert = grpc.ssl_channel_credentials(
            ca, pki.client_key.read_bytes(), pki.client_cert.read_bytes()
        )
        without_cert = grpc.ssl_channel_credentials(ca)
        assert await _health(grpc.aio.secure_channel(address, with_cert)) == OK
        assert await _health(grpc.aio.secure_channel(address, without_cert)) == UNAVAILABLE
        assert await _health(grpc.aio.insecure_channel(address)) == UNAVAILABLE
        # The channel factory: its client certificate, and the server name it checks.
        client = {
            "PANTREE_TLS_CA_FILE": str(pki.ca),
            "PANTREE_TLS_CLIENT_CERT_FILE": str(pki.client_cert),
            "PANTREE_TLS_CLIENT_KEY_FILE": str(pki.client_key),
        }
        for name, expected in ((SERVER_NAME, OK), ("elsewhere.test", UNAVAILABLE)):
            settings = config_loader.load(ClientConfig, client | {"PANTREE_TLS_SERVER_NAME": name})
            assert await _health(create_channel(address, settings, 4 << 20)) == expected, name
    finally:
        await server.stop(grace=0)
