"""The one gRPC server factory: health per service, reflection, interceptor, graceful stop."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from threading import Thread
from typing import Any, Protocol, runtime_checkable
from wsgiref.simple_server import WSGIServer

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from pantree_common import metrics
from pantree_common.auth import AuthConfig, AuthInterceptor, TokenStore
from pantree_common.config import read_file, setting
from pantree_common.errors import ConfigError
from pantree_common.interceptors import Drain, ServerInterceptor

log = logging.getLogger("pantree.server")

# What servicer methods receive; request/response types are already on the method signature.
Context = grpc.aio.ServicerContext[Any, Any]

# Keepalive: clients with calls in flight ping a silent connection every 200 ms (see client.py);
# the server accepts pings down to every 100 ms, so a client never gets GOAWAY(too_many_pings)
# for following its own settings.
SERVER_KEEPALIVE_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.keepalive_time_ms", 60_000),
    ("grpc.keepalive_timeout_ms", 20_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 100),
    ("grpc.http2.max_pings_without_data", 0),
)


@dataclass(frozen=True)
class ServerConfig:
    """How a Pantree gRPC server listens and stops."""

    host: str = setting("PANTREE_HOST", "[::]", "Address the gRPC server binds to.")
    """Bind address; `[::]` listens on every interface, `127.0.0.1` on loopback only."""
    port: int = setting("PORT", 50051, "gRPC port to listen on; 0 picks a free port.")
    """TCP port; 0 asks the OS for a free one (tests)."""
    max_message_bytes: int = setting(
        "PANTREE_MAX_MESSAGE_BYTES",
        4 * 1024 * 1024,
        "Largest gRPC message accepted or sent, in bytes; larger requests get RESOURCE_EXHAUSTED.",
    )
    """Limit on one message in either direction."""
    shutdown_grace_s: float = setting(
        "PANTREE_SHUTDOWN_GRACE_S", 10.0, "Seconds in-flight calls get to finish after SIGTERM."
    )
    """Drain time before remaining calls are cancelled."""
    metrics_port: int = setting(
        "PANTREE_METRICS_PORT", 9464, "Port of the Prometheus /metrics endpoint; 0 turns it off."
    )
    """Served on PANTREE_HOST, apart from the gRPC port."""
    max_concurrent_rpcs: int = setting(
        "PANTREE_MAX_CONCURRENT_RPCS",
        500,
        "Calls this server works on at once; one more is refused at once with "
        "RESOURCE_EXHAUSTED; 0 (or less): no limit. Health checks are never refused.",
    )
    """Sheds load before latency and memory grow; in all-in-one mode only calls from outside
    count (the orchestrator's calls to its own steps never are refused)."""
    processes: int = setting(
        "PANTREE_PROCESSES",
        1,
        "Server processes sharing the gRPC port (SO_REUSEPORT), one per core at most; the "
        "kernel spreads connections over them. Metrics of process i are on "
        "PANTREE_METRICS_PORT + i.",
    )
    """`pantree serve --processes N`; see pantree_common/processes.py."""
    max_connection_age_s: float = setting(
        "PANTREE_MAX_CONNECTION_AGE_S",
        0.0,
        "Seconds after which the server asks a client to reconnect (GOAWAY; calls in flight get "
        "PANTREE_SHUTDOWN_GRACE_S to finish), so clients re-resolve names and reach new "
        "replicas; 0 (or less): never.",
    )
    """gRPC adds ±10% jitter so a fleet of clients does not reconnect at once."""
    tls_cert_file: str = setting(
        "PANTREE_TLS_CERT_FILE",
        "",
        "PEM certificate chain of the gRPC port; with PANTREE_TLS_KEY_FILE it turns TLS on.",
    )
    """Its names (SANs) must match the address clients dial, or their PANTREE_TLS_SERVER_NAME."""
    tls_key_file: str = setting(
        "PANTREE_TLS_KEY_FILE", "", "PEM private key of PANTREE_TLS_CERT_FILE."
    )
    """A mounted Secret; read once at start-up."""
    tls_client_ca_file: str = setting(
        "PANTREE_TLS_CLIENT_CA_FILE",
        "",
        "PEM CA bundle client certificates must chain to; setting it requires one (mutual TLS).",
    )
    """Clients without a certificate it signed fail the handshake, before any RPC."""
    auth: AuthConfig = field(default_factory=AuthConfig)

    def validate(self) -> None:
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise ConfigError("PANTREE_TLS_CERT_FILE and PANTREE_TLS_KEY_FILE go together")
        if self.tls_client_ca_file and not self.tls_cert_file:
            raise ConfigError("PANTREE_TLS_CLIENT_CA_FILE needs PANTREE_TLS_CERT_FILE")
        if not 1 <= self.processes <= 64:
            raise ConfigError(f"PANTREE_PROCESSES must be 1-64, got {self.processes}")

    def credentials(self) -> grpc.ServerCredentials | None:
        """TLS (mutual when a client CA is set) as configured; None: plaintext."""
        if not self.tls_cert_file:
            return None
        client_ca = self.tls_client_ca_file
        return grpc.ssl_server_credentials(
            [
                (
                    read_file("PANTREE_TLS_KEY_FILE", self.tls_key_file),
                    read_file("PANTREE_TLS_CERT_FILE", self.tls_cert_file),
                )
            ],
            root_certificates=read_file("PANTREE_TLS_CLIENT_CA_FILE", client_ca)
            if client_ca
            else None,
            require_client_auth=bool(client_ca),
        )


@runtime_checkable
class Lifecycle(Protocol):
    """A servicer that must prepare adapters before serving and release them after."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class Service:
    """One servicer to register, under its full proto service name."""

    name: str
    servicer: Any
    add_to_server: Callable[[Any, grpc.aio.Server], None]


class PantreeServer:
    """A bound (not yet started) server and the services it carries."""

    def __init__(
        self,
        server: grpc.aio.Server,
        port: int,
        config: ServerConfig,
        drain: Drain,
        interceptors: Sequence[grpc.aio.ServerInterceptor[Any, Any]] = (),
    ) -> None:
        self.server = server
        self.drain = drain
        self.interceptors = tuple(interceptors)
        """The server's interceptors, in order; in-process calls run them too (local.py)."""
        self.port = port
        self.config = config
        self.health = health.aio.HealthServicer()  # type: ignore[attr-defined]
        self.services: list[Service] = []
        self._stopped = asyncio.Event()
        self._metrics: tuple[WSGIServer, Thread] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def add(self, services: Sequence[Service], internal: Sequence[str] = ()) -> None:
        """Register services; `internal` ones keep serving while draining (see Drain)."""
        for service in services:
            service.add_to_server(service.servicer, self.server)
            self.services.append(service)
        self.drain.internal_services = self.drain.internal_services | frozenset(internal)

    async def start(self, listen_first: bool = True) -> None:
        """Start the server, then adapters; each service reports SERVING once it is ready, so
        probes get NOT_SERVING through a long first start. Without `listen_first` the port is
        listened on only once every adapter is ready: a further process on a shared port
        (PANTREE_PROCESSES) must not take connections it cannot serve yet."""
        names = [s.name for s in self.services]
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            [
                *names,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ],
            self.server,
        )
        for name in ["", *names]:
            await self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        if listen_first:
            await self.server.start()
        started: list[Lifecycle] = []
        try:
            for service in self.services:
                if isinstance(service.servicer, Lifecycle):
                    await service.servicer.start()
                    started.append(service.servicer)
                await self.health.set(service.name, health_pb2.HealthCheckResponse.SERVING)
        except BaseException:
            # An adapter that cannot start (store locked, bad URI) leaves nothing running.
            await self.server.stop(0)
            for servicer in reversed(started):
                await servicer.close()
            raise
        if self.config.metrics_port:
            try:
                self._metrics = metrics.serve(self.config.host, self.config.metrics_port)
            except OSError as exc:
                await self.server.stop(0)
                raise ConfigError(
                    f"cannot serve metrics on port {self.config.metrics_port} ({exc.strerror}); "
                    "set PANTREE_METRICS_PORT to a free port, or 0 to turn metrics off"
                ) from None
        if not listen_first:
            await self.server.start()
        await self.health.set("", health_pb2.HealthCheckResponse.SERVING)
        log.info("serving", extra={"port": self.port, "services": names})

    async def stop(self, grace: float | None = None) -> None:
        """Report NOT_SERVING, refuse new calls, let in-flight ones finish within the grace,
        then release adapters."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        grace = self.config.shutdown_grace_s if grace is None else grace
        deadline = asyncio.get_running_loop().time() + grace
        await self.health.enter_graceful_shutdown()
        self.drain.draining = True
        drained = await self.drain.wait_idle(grace)
        if not drained:
            log.warning(
                "grace period over, cancelling calls", extra={"in_flight": self.drain.in_flight}
            )
        await self.server.stop(max(0.0, deadline - asyncio.get_running_loop().time()))
        for service in reversed(self.services):
            if isinstance(service.servicer, Lifecycle):
                await service.servicer.close()
        if self._metrics is not None:
            self._metrics[0].shutdown()
            self._metrics[0].server_close()
        log.info("stopped", extra={"port": self.port})

    async def serve_until_signalled(
        self, ready: Callable[[], None] | None = None, listen_first: bool = True
    ) -> None:
        """Serve until SIGTERM or SIGINT, then stop gracefully; `ready()` once serving."""
        await self.start(listen_first)
        if ready is not None:
            ready()
        signalled = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, signalled.set)
        await signalled.wait()
        log.info("signal received, draining", extra={"grace_s": self.config.shutdown_grace_s})
        await self.stop()


def create_server(
    config: ServerConfig,
    build: Callable[[str], Sequence[Service]],
    internal: Collection[str] = (),
) -> PantreeServer:
    """Bind a server, then register the services `build(own_address)` returns.

    The services are built after binding so an all-in-one orchestrator can dial the server it
    lives on (port 0 included). `internal` names those of them that this same server calls.
    """
    options = [
        ("grpc.max_receive_message_length", config.max_message_bytes),
        ("grpc.max_send_message_length", config.max_message_bytes),
        ("grpc.so_reuseport", int(config.processes > 1)),
        *SERVER_KEEPALIVE_OPTIONS,
    ]
    if config.max_connection_age_s > 0:
        options += [
            ("grpc.max_connection_age_ms", round(config.max_connection_age_s * 1000)),
            ("grpc.max_connection_age_grace_ms", round(config.shutdown_grace_s * 1000)),
        ]
    drain = Drain(config.max_concurrent_rpcs)
    interceptors: list[grpc.aio.ServerInterceptor[Any, Any]] = [ServerInterceptor(drain)]
    tokens = TokenStore(config.auth)
    if tokens.enabled:
        interceptors.insert(0, AuthInterceptor(tokens))
    credentials = config.credentials()
    log.info(
        "security",
        extra={
            "tls": "mutual" if config.tls_client_ca_file else "on" if credentials else "off",
            "auth": {"tokens": tokens.names} if tokens.enabled else "off",
        },
    )
    if tokens.enabled and credentials is None:
        log.warning("bearer tokens are on without TLS: they cross the network in clear text")
    server = grpc.aio.server(interceptors=interceptors, options=options)
    address = f"{config.host}:{config.port}"
    if credentials is None:
        port = server.add_insecure_port(address)
    else:
        port = server.add_secure_port(address, credentials)
    if port == 0:
        raise OSError(f"cannot bind {config.host}:{config.port}")
    pantree_server = PantreeServer(server, port, config, drain, interceptors)
    services = build(pantree_server.address)
    pantree_server.add(services, list(internal))
    return pantree_server
