"""MilvusStore when Milvus goes away under it: calls fail as Unavailable within their deadline,
and the same store serves again, with its data, once Milvus is back (reconnect on failure)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from milvus_lite.server_manager import server_manager_instance

from pantree_common.domain import catalog
from pantree_common.domain.history import History
from pantree_common.errors import Unavailable
from services.vectors.embedding import HashingEmbedder
from services.vectors.index import VectorIndex
from services.vectors.store import MilvusStore
from tests.milvus_server import MilvusServer, MilvusServerError, start_milvus_server

DIMENSIONS = 64
TIMEOUT_S = 3.0
T = TypeVar("T")


def eventually(call: Callable[[], T], within_s: float) -> tuple[T, int]:
    """The first result of `call` that does not raise Unavailable, and how many calls failed."""
    deadline = time.monotonic() + within_s
    failures = 0
    while True:
        try:
            return call(), failures
        except Unavailable:
            failures += 1
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def fill(store: MilvusStore) -> VectorIndex:
    index = VectorIndex(HashingEmbedder(DIMENSIONS), store)
    index.index_products(catalog.products())
    index.upsert_profile(History.build("c-1", catalog.products()[:2], [0, 1], [1, 8]))
    return index


def assert_intact(store: MilvusStore, index: VectorIndex) -> None:
    assert store.count_products() == len(catalog.products())
    [matches] = index.search(["milk"], 3, set())
    assert all("Milk" in m.product.name for m in matches)
    assert store.get_profile("c-1") is not None


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[MilvusServer]:
    """A server of this test's own: it is killed and restarted."""
    try:
        server = start_milvus_server(tmp_path / "milvus")
    except MilvusServerError as error:
        pytest.fail(f"the Milvus server for this test did not start: {error}")
    yield server
    server.kill()  # its data is not needed any more
    server.remove_binaries()


@pytest.mark.timeout(300)  # two server starts of up to 90 s each
def test_store_recovers_after_the_server_crashes(own_server: MilvusServer) -> None:
    store = MilvusStore(own_server.uri, DIMENSIONS, timeout_s=TIMEOUT_S)
    try:
        index = fill(store)
        own_server.kill()  # SIGKILL: no graceful shutdown, nothing flushed on the way out

        began = time.monotonic()
        with pytest.raises(Unavailable, match="count products failed on Milvus server"):
            store.count_products()
        # One failed call, one reconnect attempt: each under the store's deadline.
        assert time.monotonic() - began < 2 * TIMEOUT_S + 2

        own_server.start()  # same ports, same data directory
        count, failures = eventually(store.count_products, within_s=60)
        assert count == len(catalog.products())
        assert store.reconnects >= 1
        assert_intact(store, index)
    finally:
        store.close()
    print(f"recovered after {failures} failed calls; restart took {own_server.startup_s:.1f} s")


def test_lite_store_recovers_when_its_server_goes_away(tmp_path: Path) -> None:
    path = str(tmp_path / "milvus.db")
    store = MilvusStore(path, DIMENSIONS, timeout_s=TIMEOUT_S)
    try:
        index = fill(store)
        # Milvus Lite serves the file from a gRPC server inside this process: stop it under the
        # store, as a crash of that server would.
        server_manager_instance.release_server(path)
        assert store.count_products() == len(catalog.products())  # reconnects within the call
        assert store.reconnects == 1
        assert_intact(store, index)
    finally:
        store.close()
