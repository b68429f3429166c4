"""Settings of the HTTP gateway: where it listens, which orchestrator it calls, what it admits.

The gateway also reads the shared client settings (PANTREE_CALL_TIMEOUT_S,
PANTREE_RETRY_ATTEMPTS, PANTREE_MAX_MESSAGE_BYTES, PANTREE_LOG_LEVEL) that every Pantree
process reads; only what is the gateway's own is declared here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pantree_common.auth import AuthConfig
from pantree_common.config import setting
from pantree_common.errors import ConfigError

_ORIGIN = re.compile(r"^https?://[^/\s]+$")


@dataclass(frozen=True)
class GatewayConfig:
    """How the gateway serves browsers."""

    host: str = setting("PANTREE_GATEWAY_HOST", "0.0.0.0", "Address the HTTP gateway binds to.")
    """`0.0.0.0` listens on every IPv4 interface, `127.0.0.1` on loopback only."""
    port: int = setting(
        "PANTREE_GATEWAY_PORT", 8080, "HTTP port of the gateway; 0 picks a free port."
    )
    """TCP port of REST, WebSocket and the demo page."""
    orchestrator_addr: str = setting(
        "ORCHESTRATOR_SERVICE_ADDR",
        "localhost:50051",
        "host:port of the orchestrator the gateway calls.",
    )
    """A `pantree serve all` or `pantree serve orchestrator` process."""
    cors_origins: str = setting(
        "PANTREE_GATEWAY_CORS_ORIGINS",
        "",
        "Comma-separated origins (https://shop.example) allowed to call the gateway from "
        "another site; * for any; empty for none.",
    )
    """The demo page is served by the gateway itself and needs no CORS."""
    cors_allow_credentials: bool = setting(
        "PANTREE_GATEWAY_CORS_CREDENTIALS",
        False,
        "Whether those origins may send cookies and credentials; not allowed with *.",
    )
    """Browsers refuse credentials with a wildcard origin, so the pair is a configuration error."""
    max_body_bytes: int = setting(
        "PANTREE_GATEWAY_MAX_BODY_BYTES",
        1024 * 1024,
        "Largest request body or WebSocket message accepted, in bytes (1024 or more); larger "
        "ones get 413.",
    )
    """Keeps one request from holding the gateway's memory; JSON is larger than the gRPC
    message it becomes, so the default stays under PANTREE_MAX_MESSAGE_BYTES."""
    rate_limit_per_s: float = setting(
        "PANTREE_GATEWAY_RATE_LIMIT_PER_S",
        0.0,
        "Requests per second each client (its token's name, else its address) may make to the "
        "API and WebSocket, sustained; more get 429 with Retry-After; 0 turns the limit off.",
    )
    """A token bucket per client, refilled at this rate (gateway/security.py)."""
    rate_limit_burst: int = setting(
        "PANTREE_GATEWAY_RATE_LIMIT_BURST",
        20,
        "Requests a client may make at once before PANTREE_GATEWAY_RATE_LIMIT_PER_S applies.",
    )
    """The bucket's size: a page load's few calls pass even at a low sustained rate."""
    auth: AuthConfig = field(default_factory=AuthConfig)
    """The same tokens and scopes as the gRPC servers: a route needs the scope of the RPC it
    calls."""

    @property
    def origins(self) -> list[str]:
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]

    def validate(self) -> None:
        if self.max_body_bytes < 1024:
            raise ConfigError(
                f"PANTREE_GATEWAY_MAX_BODY_BYTES must be 1024 or more, got {self.max_body_bytes}"
            )
        if self.rate_limit_per_s < 0 or self.rate_limit_burst < 1:
            raise ConfigError(
                "PANTREE_GATEWAY_RATE_LIMIT_PER_S must be 0 or more and "
                "PANTREE_GATEWAY_RATE_LIMIT_BURST 1 or more"
            )
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"PANTREE_GATEWAY_PORT must be 0-65535, got {self.port}")
        bad = [o for o in self.origins if o != "*" and not _ORIGIN.match(o)]
        if bad:
            raise ConfigError(
                f"PANTREE_GATEWAY_CORS_ORIGINS must list scheme://host[:port] origins, got {bad}"
            )
        if self.cors_allow_credentials and "*" in self.origins:
            raise ConfigError("PANTREE_GATEWAY_CORS_CREDENTIALS=true needs explicit origins, not *")
