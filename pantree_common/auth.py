"""Who may call what: static bearer tokens with scopes, checked by the gRPC servers and the gateway.

One token store and one scope policy serve both, so a token means the same thing on every door.
Tokens are kept as SHA-256 digests and compared in constant time; neither a token nor its digest
is ever logged or put in an error message. No token configured means authentication is off
(laptop mode); configuring any, or a tokens file (even an empty one), turns it on everywhere.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc

from pantree_common import config as config_loader
from pantree_common import metrics
from pantree_common.config import setting
from pantree_common.descriptors import SERVICES
from pantree_common.errors import ConfigError, PantreeError, PermissionDenied, Unauthenticated

if TYPE_CHECKING:
    Handler = grpc.RpcMethodHandler[Any, Any]

log = logging.getLogger("pantree.auth")

AUTHORIZATION_METADATA_KEY = "authorization"

RECOMMEND = "recommend"
PROCESS_SEED = "process_seed"
ADMIN = "admin"
INTERNAL = "internal"
SCOPES = frozenset({RECOMMEND, PROCESS_SEED, ADMIN, INTERNAL})

_ORCHESTRATOR = SERVICES["orchestrator"].full_name
# Any one of the listed scopes admits a call. Client apps and backends both read the archetypes.
METHOD_SCOPES: dict[str, frozenset[str]] = {
    f"/{_ORCHESTRATOR}/Recommend": frozenset({RECOMMEND}),
    f"/{_ORCHESTRATOR}/ProcessSeed": frozenset({PROCESS_SEED}),
    f"/{_ORCHESTRATOR}/ListArchetypes": frozenset({RECOMMEND, PROCESS_SEED}),
    f"/{_ORCHESTRATOR}/GetConfig": frozenset({ADMIN}),
}
# The steps are called by the orchestrator alone (DESIGN.md): its token carries `internal`.
_STEP_SERVICES = frozenset(d.full_name for name, d in SERVICES.items() if name != "orchestrator")
# Load balancers and kubelets probe health without credentials.
_EXEMPT_SERVICES = frozenset({"grpc.health.v1.Health"})

DIGEST_PREFIX = "sha256:"
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
# RFC 6750 b64token: what may follow "Bearer ".
_BEARER = re.compile(r"^[Bb][Ee][Aa][Rr][Ee][Rr] ([A-Za-z0-9\-._~+/]+=*)$")
# A tokens file is looked at again at most this often, so a rotated Secret is picked up live.
RELOAD_INTERVAL_S = 5.0


@dataclass(frozen=True)
class AuthConfig:
    """Which bearer tokens this process accepts, and with which scopes."""

    tokens_file: str = setting(
        "PANTREE_AUTH_TOKENS_FILE",
        "",
        "File of accepted bearer tokens, one `sha256:DIGEST SCOPES NAME` (or `TOKEN SCOPES "
        "NAME`) per line, scopes from recommend, process_seed, admin, internal; setting it "
        "turns authentication on (docs/SECURITY.md). Changes are picked up within 5 s.",
    )
    """A mounted Secret; digests keep the plaintext tokens out of it."""
    tokens: str = setting(
        "PANTREE_AUTH_TOKENS",
        "",
        "Accepted bearer tokens in the file's format, entries separated by `;`, on top of "
        "PANTREE_AUTH_TOKENS_FILE; empty with no file: authentication off.",
        secret=True,
    )
    """For one-off setups and tests; never logged nor returned by GetConfig."""

    def validate(self) -> None:
        parse_entries(self.tokens.replace(";", "\n"), "PANTREE_AUTH_TOKENS")


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: the name its token was given and what it may do."""

    name: str
    scopes: frozenset[str]


@dataclass(frozen=True)
class _Entry:
    digest: bytes
    principal: Principal


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def parse_entries(text: str, source: str) -> list[_Entry]:
    """Entries of a tokens file; errors name the line, never its credential."""
    entries = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.split("#", 1)[0].strip()
        if not stripped:
            continue
        parts = stripped.split()
        if len(parts) != 3:
            raise ConfigError(f"{source}, entry {number}: expected CREDENTIAL SCOPES NAME")
        credential, scope_list, name = parts
        scopes = frozenset(s for s in scope_list.split(",") if s)
        unknown = sorted(scopes - SCOPES)
        if unknown or not scopes:
            raise ConfigError(
                f"{source}, entry {number} ({name}): unknown scopes {unknown}; expected some of "
                f"{', '.join(sorted(SCOPES))}"
            )
        if credential.startswith(DIGEST_PREFIX):
            if not _DIGEST.match(credential):
                raise ConfigError(
                    f"{source}, entry {number} ({name}): a digest is sha256: and 64 hex digits"
                )
            value = bytes.fromhex(credential.removeprefix(DIGEST_PREFIX))
        else:
            value = digest(credential)
        entries.append(_Entry(value, Principal(name, scopes)))
    return entries


class TokenStore:
    """The accepted tokens: those of PANTREE_AUTH_TOKENS plus the tokens file, re-read when it
    changes (a bad new version is refused and the old one kept, so no one is locked out)."""

    def __init__(self, config: AuthConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.enabled = bool(config.tokens or config.tokens_file)
        self._inline = parse_entries(config.tokens.replace(";", "\n"), "PANTREE_AUTH_TOKENS")
        self._path = config.tokens_file
        self._clock = clock
        self._file: list[_Entry] = []
        self._version: tuple[int, int, int] | None = None
        self._checked = clock()
        if self._path:
            self._file = self._read()
            self._version = self._stat()

    def _stat(self) -> tuple[int, int, int]:
        info = os.stat(os.path.expanduser(self._path))
        return info.st_ino, info.st_mtime_ns, info.st_size

    def _read(self) -> list[_Entry]:
        content = config_loader.read_file("PANTREE_AUTH_TOKENS_FILE", self._path)
        try:
            text = content.decode("utf-8")
        except UnicodeDecodeError:
            raise ConfigError("PANTREE_AUTH_TOKENS_FILE is not UTF-8 text") from None
        return parse_entries(text, "PANTREE_AUTH_TOKENS_FILE")

    def _refresh(self) -> None:
        now = self._clock()
        if not self._path or now - self._checked < RELOAD_INTERVAL_S:
            return
        self._checked = now
        try:
            version = self._stat()
            if version != self._version:
                self._file, self._version = self._read(), version
                log.info("tokens file reloaded", extra={"names": self.names})
        except (OSError, ConfigError) as exc:
            reason = exc.message if isinstance(exc, ConfigError) else type(exc).__name__
            log.error("tokens file not reloaded; the previous tokens stay", extra={"why": reason})

    @property
    def names(self) -> list[str]:
        return sorted({e.principal.name for e in [*self._inline, *self._file]})

    def lookup(self, token: str) -> Principal | None:
        """The principal of `token`: every entry is compared, in constant time, so how long
        this takes says nothing about which entry (or how much of one) matched."""
        self._refresh()
        presented = digest(token)
        found = None
        for entry in [*self._inline, *self._file]:
            if hmac.compare_digest(entry.digest, presented):
                found = entry.principal
        return found

    def authenticate(self, authorization: Sequence[str]) -> Principal:
        """The caller behind the `authorization` values it sent (there must be exactly one)."""
        if not authorization:
            raise Unauthenticated("missing credentials: send 'authorization: Bearer <token>'")
        match = _BEARER.match(authorization[0]) if len(authorization) == 1 else None
        if match is None:
            raise Unauthenticated("malformed credentials: expected one 'Bearer <token>'")
        principal = self.lookup(match.group(1))
        if principal is None:
            raise Unauthenticated("invalid credentials: the token is not accepted here")
        return principal


def required_scopes(method: str) -> frozenset[str] | None:
    """Scopes any one of which admits a call to `method` (/package.Service/Method); None for
    the methods everybody may call. Unlisted methods, reflection included, need `admin`."""
    service = method.split("/")[1] if method.count("/") == 2 else ""
    if service in _EXEMPT_SERVICES:
        return None
    if service in _STEP_SERVICES:
        return frozenset({INTERNAL})
    return METHOD_SCOPES.get(method, frozenset({ADMIN}))


def authorize(store: TokenStore, authorization: Sequence[str], method: str) -> Principal | None:
    """The caller, if it may call `method`; None when no credential is needed (auth off, or an
    exempt method). Raises Unauthenticated or PermissionDenied."""
    required = required_scopes(method)
    if not store.enabled or required is None:
        return None
    principal = store.authenticate(authorization)
    check_scope(principal, required, method)
    return principal


def check_scope(principal: Principal, required: frozenset[str], method: str) -> None:
    if not principal.scopes & required:
        raise PermissionDenied(
            f"{principal.name!r} may not call {method}: it needs the "
            f"{' or '.join(sorted(required))} scope"
        )


def _refusal(handler: Handler, error: PantreeError, method: str) -> Handler:
    """A handler of the same kind as `handler` that answers `error` without reading the
    request (a coroutine serves every kind in grpc.aio)."""

    async def refuse(_: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        metrics.record(method, error.code.name, 0.0)
        log.info(
            "rpc refused",
            extra={
                "method": method,
                "code": error.code.name,
                "error": error.message,
                "peer": context.peer(),
            },
        )
        await context.abort(error.code, error.message)

    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(refuse)
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(refuse)
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(refuse)
    return grpc.stream_stream_rpc_method_handler(refuse)


class AuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Admits a call only with a bearer token whose scopes cover its method; installed first by
    create_server when authentication is on, so a refused call costs no handler work."""

    def __init__(self, store: TokenStore) -> None:
        self._store = store

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method
        sent = [
            str(value)
            for key, value in handler_call_details.invocation_metadata or ()
            if key == AUTHORIZATION_METADATA_KEY
        ]
        try:
            authorize(self._store, sent, method)
        except (Unauthenticated, PermissionDenied) as exc:
            return _refusal(handler, exc, method)
        return handler


def new_token(scopes: str, name: str) -> tuple[str, str]:
    """A fresh random token and its tokens-file line (which holds only the digest)."""
    token = secrets.token_urlsafe(32)
    line = f"{DIGEST_PREFIX}{digest(token).hex()}  {scopes}  {name}"
    parse_entries(line, "the new entry")  # refuses unknown scopes before anyone relies on it
    return token, line


if __name__ == "__main__":
    # python -m pantree_common.auth SCOPES NAME: the token on stderr, its file line on stdout.
    if len(sys.argv) != 3:
        raise SystemExit("usage: python -m pantree_common.auth SCOPES NAME")
    token, line = new_token(sys.argv[1], sys.argv[2])
    print(f"token (give it to {sys.argv[2]}, store it nowhere else): {token}", file=sys.stderr)
    print(line)
