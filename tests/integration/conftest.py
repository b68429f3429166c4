"""Real backends for the integration tests: a Milvus server shared by the whole session.

The server comes from the PyPI `milvus` package (the dev extra), started by
tests/milvus_server.py on free ports under a temporary directory. If it cannot start, every test
that needs it fails with the server's log tail: it is never skipped, so CI cannot pass without
having exercised the server path.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.milvus_server import MilvusServer, MilvusServerError, group_members, start_milvus_server

# What the session's server cost, for the terminal summary.
_SERVER_STATS: dict[str, float] = {}


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MilvusServer]:
    """One `milvus-server` for the session; tests keep apart by collection prefix."""
    data_dir = tmp_path_factory.mktemp("milvus-server")
    try:
        server = start_milvus_server(data_dir)
    except MilvusServerError as error:
        pytest.fail(f"the Milvus server for the integration tests did not start: {error}")
    _SERVER_STATS.update(startup_s=server.startup_s, rss_mib=server.rss_bytes() / 2**20)
    yield server
    process = server.process
    _SERVER_STATS["rss_end_mib"] = server.rss_bytes() / 2**20
    server.stop()  # raises if a process of its group survives SIGKILL
    if process is not None:
        assert not group_members(process.pid), "a Milvus process outlived the session"
    server.remove_binaries()


@pytest.fixture
def collection_prefix() -> str:
    """A collection prefix no other test uses (the server is shared)."""
    return f"t{uuid.uuid4().hex[:16]}"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _SERVER_STATS:
        terminalreporter.write_line(
            f"Milvus server: ready in {_SERVER_STATS['startup_s']:.1f} s, "
            f"{_SERVER_STATS['rss_mib']:.0f} MiB resident at start, "
            f"{_SERVER_STATS.get('rss_end_mib', 0):.0f} MiB at the end"
        )
