"""Who may use the gateway, and how fast: the gRPC servers' tokens and scopes, and a token bucket
per client.

A route needs the scope of the orchestrator RPC it calls (pantree_common.auth, the one policy).
Browsers cannot set headers on a WebSocket, so the socket also takes the token as an
`access_token` query parameter (RFC 6750); the gateway never logs query strings.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

import grpc
from starlette.requests import HTTPConnection

from pantree_common.auth import TokenStore, check_scope, required_scopes
from pantree_common.errors import PantreeError, Unauthenticated

# Clients whose buckets are remembered; the least recently seen beyond it start afresh.
MAX_CLIENTS = 10_000


class RateLimited(PantreeError):
    """A client used up its bucket; it may try again after `retry_after_s`."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED

    def __init__(self, retry_after_s: float) -> None:
        super().__init__(f"too many requests; retry in {retry_after_s:.1f} s")
        self.retry_after_s = retry_after_s


class ClientRateLimit:
    """A token bucket per client: `burst` requests at once, then `per_s` a second."""

    def __init__(
        self, per_s: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._rate = per_s
        self._burst = float(burst)
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, client: str) -> float:
        """Take one request for `client`: 0 when admitted, else seconds until it would be."""
        now = self._clock()
        level, updated = self._buckets.pop(client, (self._burst, now))
        level = min(self._burst, level + (now - updated) * self._rate)
        wait = 0.0 if level >= 1 else (1 - level) / self._rate
        self._buckets[client] = (level - 1 if not wait else level, now)
        if len(self._buckets) > MAX_CLIENTS:
            self._buckets.popitem(last=False)
        return wait


class Guard:
    """Checks a request against the tokens, the scope of `method` and the client's bucket."""

    def __init__(self, tokens: TokenStore, limit: ClientRateLimit | None) -> None:
        self.tokens = tokens
        self._limit = limit

    def check(self, connection: HTTPConnection, method: str) -> None:
        """Raises Unauthenticated, PermissionDenied or RateLimited. The bucket is taken before a
        bad token is refused, so guessing tokens is rate-limited by address too."""
        principal, refusal = None, None
        required = required_scopes(method)
        if self.tokens.enabled and required is not None:
            try:
                principal = self.tokens.authenticate(_authorization(connection))
            except Unauthenticated as exc:
                refusal = exc
        if self._limit is not None:
            client = principal.name if principal else (connection.client or ("?", 0))[0]
            wait = self._limit.take(client)
            if wait:
                raise RateLimited(wait)
        if refusal is not None:
            raise refusal
        if principal is not None and required is not None:
            check_scope(principal, required, method)


def _authorization(connection: HTTPConnection) -> list[str]:
    sent = connection.headers.getlist("authorization")
    if connection.scope["type"] == "websocket" and "access_token" in connection.query_params:
        sent.append(f"Bearer {connection.query_params['access_token']}")
    return sent
