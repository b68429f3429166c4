"""The one channel factory: deadlines derived from the caller, retries only where safe."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import descriptor, descriptor_pb2

from pantree_common import context
from pantree_common.auth import AUTHORIZATION_METADATA_KEY
from pantree_common.config import read_file, secret_value, setting
from pantree_common.errors import ConfigError

# While calls are in flight, a connection silent for 200 ms gets a ping, and gRPC sets
# TCP_USER_TIMEOUT to the keepalive timeout: a peer whose kernel stops acknowledging (a cut link,
# a dead host) fails those calls with UNAVAILABLE within about 0.7 s instead of at their
# deadline, while a live peer that is merely busy (its kernel still acknowledges) is kept
# (tests/reliability/test_multihost.py). Idle connections are not pinged. The server accepts
# pings down to every 100 ms (server.SERVER_KEEPALIVE_OPTIONS).
CLIENT_KEEPALIVE_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.keepalive_time_ms", 200),
    ("grpc.keepalive_timeout_ms", 200),
    ("grpc.keepalive_permit_without_calls", 0),
    ("grpc.http2.max_pings_without_data", 0),
)

# After a lost connection gRPC waits 1 s, then 1.6 times longer after each failed attempt, up to
# 2 minutes: a step back after a long outage would go unused for minutes. Capped at 2 s, a
# restarted or reachable-again step is dialled within 2 s; calls made meanwhile fail fast. A
# connection attempt is given up after 300 ms (20 s by default; "min_reconnect_backoff" is the
# least time an attempt gets): a peer on the same network answers in milliseconds, and a call
# retried towards an unreachable one fails within a second rather than waiting out the attempt.
CLIENT_RECONNECT_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.initial_reconnect_backoff_ms", 250),
    ("grpc.max_reconnect_backoff_ms", 2_000),
    ("grpc.min_reconnect_backoff_ms", 200),
)

# Time kept back from the inbound deadline so the caller can still report an upstream failure.
DEADLINE_MARGIN_S = 0.005

# gRPC's built-in load-balancing policies a channel may use (PANTREE_GRPC_LB_POLICY).
LB_POLICIES = ("pick_first", "round_robin")

_SAFE_LEVELS = (
    descriptor_pb2.MethodOptions.NO_SIDE_EFFECTS,
    descriptor_pb2.MethodOptions.IDEMPOTENT,
)


@dataclass(frozen=True)
class ClientConfig:
    """How Pantree calls other Pantree services."""

    default_timeout_s: float = setting(
        "PANTREE_CALL_TIMEOUT_S",
        10.0,
        "Deadline of an outbound call when the inbound call has none, in seconds.",
    )
    """Upper bound on any outbound call; the inbound deadline shortens it."""
    retry_attempts: int = setting(
        "PANTREE_RETRY_ATTEMPTS",
        3,
        "Attempts (first try included) for idempotent unary calls that fail with UNAVAILABLE.",
    )
    """gRPC retryPolicy.maxAttempts; 1 turns retries off."""
    lb_policy: str = setting(
        "PANTREE_GRPC_LB_POLICY",
        "pick_first",
        "How a channel spreads calls over the addresses its target resolves to: pick_first (one "
        "connection) or round_robin (one per address: with a headless Kubernetes Service, one "
        "per pod).",
    )
    """round_robin spreads calls only when the name resolves to every backend (a headless
    Service); a ClusterIP resolves to one address, and HTTP/2 keeps that one connection."""
    tls_ca_file: str = setting(
        "PANTREE_TLS_CA_FILE",
        "",
        "PEM CA bundle that servers' certificates must chain to; setting it makes outbound "
        "calls use TLS.",
    )
    """The orchestrator's calls to its steps, the gateway's, the CLI's and doctor's."""
    tls_cert_file: str = setting(
        "PANTREE_TLS_CLIENT_CERT_FILE",
        "",
        "PEM client certificate presented to servers that require mutual TLS.",
    )
    """Needs PANTREE_TLS_CA_FILE and PANTREE_TLS_CLIENT_KEY_FILE."""
    tls_key_file: str = setting(
        "PANTREE_TLS_CLIENT_KEY_FILE", "", "PEM private key of PANTREE_TLS_CLIENT_CERT_FILE."
    )
    """A mounted Secret; read when a channel is created."""
    tls_server_name: str = setting(
        "PANTREE_TLS_SERVER_NAME",
        "",
        "Name expected in servers' certificates instead of the dialled host (tests, "
        "all-in-one mode dialling 127.0.0.1).",
    )
    """gRPC's ssl_target_name_override."""
    auth_token: str = setting(
        "PANTREE_AUTH_CLIENT_TOKEN",
        "",
        "Bearer token sent on outbound calls (the orchestrator's needs the internal scope); "
        "empty sends none.",
        secret=True,
    )
    """Sent as `authorization: Bearer ...` metadata; never logged nor returned by GetConfig."""
    auth_token_file: str = setting(
        "PANTREE_AUTH_CLIENT_TOKEN_FILE",
        "",
        "File holding the bearer token (a mounted secret), read when PANTREE_AUTH_CLIENT_TOKEN "
        "is empty.",
    )
    """So a Kubernetes secret can be mounted instead of put in the environment."""

    def validate(self) -> None:
        if self.lb_policy not in LB_POLICIES:
            raise ConfigError(
                f"PANTREE_GRPC_LB_POLICY must be one of {', '.join(LB_POLICIES)}, "
                f"got {self.lb_policy!r}"
            )
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise ConfigError(
                "PANTREE_TLS_CLIENT_CERT_FILE and PANTREE_TLS_CLIENT_KEY_FILE go together"
            )
        if (self.tls_cert_file or self.tls_server_name) and not self.tls_ca_file:
            raise ConfigError(
                "PANTREE_TLS_CLIENT_CERT_FILE and PANTREE_TLS_SERVER_NAME need PANTREE_TLS_CA_FILE"
            )

    def credentials(self) -> grpc.ChannelCredentials | None:
        """TLS as configured (with a client certificate for mutual TLS); None: plaintext."""
        if not self.tls_ca_file:
            return None
        cert, key = self.tls_cert_file, self.tls_key_file
        return grpc.ssl_channel_credentials(
            root_certificates=read_file("PANTREE_TLS_CA_FILE", self.tls_ca_file),
            private_key=read_file("PANTREE_TLS_CLIENT_KEY_FILE", key) if key else None,
            certificate_chain=read_file("PANTREE_TLS_CLIENT_CERT_FILE", cert) if cert else None,
        )

    def authorization(self) -> str:
        """The `authorization` metadata value outbound calls carry; "" for none."""
        token = secret_value(
            self.auth_token, self.auth_token_file, "PANTREE_AUTH_CLIENT_TOKEN_FILE"
        )
        return f"Bearer {token}" if token else ""


def retry_service_config(
    services: Iterable[descriptor.ServiceDescriptor], attempts: int
) -> dict[str, Any]:
    """A service config retrying UNAVAILABLE on the unary methods the protos mark idempotent."""
    names = [
        {"service": service.full_name, "method": method.name}
        for service in services
        for method in service.methods
        if not method.server_streaming
        and not method.client_streaming
        and method.GetOptions().idempotency_level in _SAFE_LEVELS
    ]
    if attempts < 2 or not names:
        return {"methodConfig": []}
    return {
        "methodConfig": [
            {
                "name": names,
                "retryPolicy": {
                    "maxAttempts": min(attempts, 5),
                    "initialBackoff": "0.05s",
                    "maxBackoff": "1s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ]
    }


def channel_service_config(
    services: Iterable[descriptor.ServiceDescriptor], config: ClientConfig
) -> dict[str, Any]:
    """The service config of a channel: the retry policy and the load-balancing policy."""
    return {
        **retry_service_config(services, config.retry_attempts),
        "loadBalancingConfig": [{config.lb_policy: {}}],
    }


def call_timeout(requested: float | None, default: float) -> float:
    """The timeout of an outbound call: the smallest of what was asked, the default and what the
    inbound call has left (minus a margin)."""
    timeout = default if requested is None else min(requested, default)
    remaining = context.remaining_seconds()
    if remaining is not None:
        timeout = min(timeout, remaining - DEADLINE_MARGIN_S)
    return max(timeout, 0.001)


def outbound_metadata(
    sent: Iterable[tuple[str, str | bytes]] | None, authorization: str
) -> grpc.aio.Metadata:
    """An outbound call's metadata: what the caller set, plus the request id and the bearer
    token (the channel factory's interceptors and pantree_common.local both add them)."""
    metadata = grpc.aio.Metadata(*(sent or ()))
    request_id = context.request_id.get()
    if request_id and context.REQUEST_ID_METADATA_KEY not in metadata:
        metadata.add(context.REQUEST_ID_METADATA_KEY, request_id)
    if authorization and AUTHORIZATION_METADATA_KEY not in metadata:
        metadata.add(AUTHORIZATION_METADATA_KEY, authorization)
    return metadata


def _with_context(
    details: grpc.aio.ClientCallDetails, default: float, authorization: str
) -> grpc.aio.ClientCallDetails:
    return grpc.aio.ClientCallDetails(
        method=details.method,
        timeout=call_timeout(details.timeout, default),
        metadata=outbound_metadata(details.metadata, authorization),
        credentials=details.credentials,
        wait_for_ready=details.wait_for_ready,
    )


class _UnaryContext(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[type-arg]
    def __init__(self, default_timeout: float, authorization: str) -> None:
        self._default = default_timeout
        self._authorization = authorization

    async def intercept_unary_unary(
        self, continuation: Any, client_call_details: Any, request: Any
    ) -> Any:
        details = _with_context(client_call_details, self._default, self._authorization)
        return await continuation(details, request)


class _StreamContext(grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[type-arg]
    def __init__(self, default_timeout: float, authorization: str) -> None:
        self._default = default_timeout
        self._authorization = authorization

    async def intercept_unary_stream(
        self, continuation: Any, client_call_details: Any, request: Any
    ) -> Any:
        details = _with_context(client_call_details, self._default, self._authorization)
        return await continuation(details, request)


def create_channel(
    target: str,
    config: ClientConfig,
    max_message_bytes: int,
    services: Iterable[descriptor.ServiceDescriptor] = (),
) -> grpc.aio.Channel:
    """An aio channel to `target`, TLS when configured, carrying request ids, derived deadlines
    and the configured bearer token (as metadata: gRPC drops call credentials on plaintext
    channels, such as all-in-one mode on a laptop), retrying
    UNAVAILABLE on the idempotent unary methods of `services`, balancing calls with
    `config.lb_policy`. `max_message_bytes` is the server's limit, so what one side sends the
    other accepts."""
    options = [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.enable_retries", 1),
        ("grpc.service_config", json.dumps(channel_service_config(services, config))),
        *CLIENT_KEEPALIVE_OPTIONS,
        *CLIENT_RECONNECT_OPTIONS,
    ]
    if config.tls_server_name:
        options.append(("grpc.ssl_target_name_override", config.tls_server_name))
    authorization = config.authorization()
    interceptors: list[Any] = [
        _UnaryContext(config.default_timeout_s, authorization),
        _StreamContext(config.default_timeout_s, authorization),
    ]
    credentials = config.credentials()
    if credentials is None:
        return grpc.aio.insecure_channel(target, options=options, interceptors=interceptors)
    return grpc.aio.secure_channel(target, credentials, options=options, interceptors=interceptors)
