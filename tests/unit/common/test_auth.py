"""The token store and the scope policy shared by the gRPC servers and the gateway."""

from __future__ import annotations

import re
from pathlib import Path

import grpc
import pytest

from pantree_common import config as config_loader
from pantree_common.auth import (
    ADMIN,
    INTERNAL,
    METHOD_SCOPES,
    SCOPES,
    AuthConfig,
    Principal,
    TokenStore,
    authorize,
    digest,
    new_token,
    parse_entries,
    required_scopes,
)
from pantree_common.client import ClientConfig
from pantree_common.descriptors import SERVICES
from pantree_common.errors import ConfigError, PermissionDenied, Unauthenticated, UpstreamError
from pantree_common.server import ServerConfig

RECOMMEND = "/pantree.orchestrator.v1.OrchestratorService/Recommend"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_entries_hold_digests_whether_the_file_gives_a_digest_or_the_token() -> None:
    token, line = new_token("recommend,admin", "billing")
    entries = parse_entries(f"# comment\n\n{line}  # trailing\nplain-token recommend app\n", "f")
    assert [e.principal for e in entries] == [
        Principal("billing", frozenset({"recommend", "admin"})),
        Principal("app", frozenset({"recommend"})),
    ]
    assert [e.digest for e in entries] == [digest(token), digest("plain-token")]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("s3cret-token recommend", "entry 1: expected CREDENTIAL SCOPES NAME"),
        ("s3cret-token recomend app", "entry 1 (app): unknown scopes"),
        ("sha256:abc recommend app", "entry 1 (app): a digest is sha256: and 64 hex digits"),
    ],
)
def test_a_bad_entry_is_refused_by_line_without_echoing_its_credential(
    line: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)) as caught:
        config_loader.load(AuthConfig, {"PANTREE_AUTH_TOKENS": line})
    assert "s3cret" not in caught.value.message


def test_every_orchestrator_rpc_has_a_deliberate_scope() -> None:
    """A new RPC must be given its scope here; until then only admin may call it."""
    orchestrator = SERVICES["orchestrator"]
    paths = {f"/{orchestrator.full_name}/{m.name}" for m in orchestrator.methods}
    assert paths == set(METHOD_SCOPES)
    assert all(scopes <= SCOPES for scopes in METHOD_SCOPES.values())


def test_steps_are_internal_health_is_open_and_everything_else_needs_admin() -> None:
    internal, admin = frozenset({INTERNAL}), frozenset({ADMIN})
    for service in SERVICES.values():
        if service.name != "OrchestratorService":
            for method in service.methods:
                assert required_scopes(f"/{service.full_name}/{method.name}") == internal
    assert required_scopes("/grpc.health.v1.Health/Check") is None
    assert required_scopes("/grpc.health.v1.Health/Watch") is None
    reflection = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
    assert required_scopes(reflection) == admin
    assert required_scopes("/pantree.orchestrator.v1.OrchestratorService/Drop") == admin
    assert required_scopes("not a method") == admin


def test_authorize_checks_the_token_then_the_scope() -> None:
    token, line = new_token("process_seed", "app")
    store = TokenStore(AuthConfig(tokens=line))
    with pytest.raises(Unauthenticated, match="missing"):
        authorize(store, [], RECOMMEND)
    for malformed in (["Basic x"], ["Bearer"], [f"Bearer {token} x"], ["Bearer a", "Bearer b"]):
        with pytest.raises(Unauthenticated, match="malformed"):
            authorize(store, malformed, RECOMMEND)
    with pytest.raises(Unauthenticated, match="invalid"):
        authorize(store, ["Bearer not-the-token"], RECOMMEND)
    with pytest.raises(PermissionDenied, match=r"'app' may not call .*Recommend.* recommend scope"):
        authorize(store, [f"Bearer {token}"], RECOMMEND)
    assert authorize(store, [f"BEARER {token}"], RECOMMEND.replace("Recommend", "ProcessSeed"))
    assert authorize(store, [], "/grpc.health.v1.Health/Check") is None


def test_without_tokens_authentication_is_off_but_an_empty_file_locks_everything(
    tmp_path: Path,
) -> None:
    assert authorize(TokenStore(AuthConfig()), [], RECOMMEND) is None
    empty = tmp_path / "tokens"
    empty.write_text("")
    with pytest.raises(Unauthenticated):
        authorize(TokenStore(AuthConfig(tokens_file=str(empty))), [], RECOMMEND)


def test_a_rotated_tokens_file_is_picked_up_and_a_broken_one_ignored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    old, old_line = new_token("recommend", "backend")
    new, new_line = new_token("recommend", "backend")
    path = tmp_path / "tokens"
    path.write_text(old_line)
    clock = Clock()
    store = TokenStore(AuthConfig(tokens_file=str(path)), clock)
    path.write_text(f"{old_line}\n{new_line}\n")  # overlap: both work while clients move
    assert store.lookup(new) is None  # not looked at again yet
    clock.now += 5
    assert store.lookup(new) == store.lookup(old) == Principal("backend", frozenset({"recommend"}))
    path.write_text(new_line)
    clock.now += 5
    assert store.lookup(old) is None
    path.write_text(f"{new_line}\nbroken")
    clock.now += 5
    assert store.lookup(new) is not None
    assert "tokens file not reloaded" in caplog.text
    assert new not in caplog.text


def test_an_unreadable_tokens_file_stops_the_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"PANTREE_AUTH_TOKENS_FILE .* cannot be read"):
        TokenStore(AuthConfig(tokens_file=str(tmp_path / "missing")))


def test_a_new_token_needs_known_scopes() -> None:
    with pytest.raises(ConfigError, match="unknown scopes"):
        new_token("everything", "x")


@pytest.mark.parametrize(
    ("cls", "env", "message"),
    [
        (ServerConfig, {"PANTREE_TLS_CERT_FILE": "c.pem"}, "go together"),
        (ServerConfig, {"PANTREE_TLS_CLIENT_CA_FILE": "ca.pem"}, "needs PANTREE_TLS_CERT_FILE"),
        (ClientConfig, {"PANTREE_TLS_CLIENT_KEY_FILE": "k.pem"}, "go together"),
        (ClientConfig, {"PANTREE_TLS_SERVER_NAME": "x"}, "need PANTREE_TLS_CA_FILE"),
    ],
)
def test_half_configured_tls_is_refused(
    cls: type[object], env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        config_loader.load(cls, env)


def test_the_client_token_comes_from_its_file(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("abc\n")
    assert ClientConfig(auth_token_file=str(path)).authorization() == "Bearer abc"
    assert ClientConfig(auth_token="xyz", auth_token_file=str(path)).authorization() == "Bearer xyz"
    assert ClientConfig().authorization() == ""


def test_a_step_refusing_the_orchestrator_is_internal_for_the_caller() -> None:
    for code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
        assert UpstreamError("frequency", code, "no").code == grpc.StatusCode.INTERNAL
