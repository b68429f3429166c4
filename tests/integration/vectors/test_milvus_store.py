"""MilvusStore and VectorIndex on real Milvus: a Milvus Lite file under tmp_path and the
session's Milvus server (tests/integration/conftest.py), the same tests on both."""

import re
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from numpy.typing import NDArray
from pymilvus import MilvusClient

from pantree_common.domain import catalog
from pantree_common.domain.history import History, Product
from pantree_common.errors import ConfigError, FailedPrecondition, Unavailable
from services.vectors import store as store_module
from services.vectors.embedding import HashingEmbedder
from services.vectors.index import VectorIndex
from services.vectors.store import IndexSpec, MilvusStore, StoredProfile
from tests.milvus_server import MilvusServer, drop_collections

DIMENSIONS = 256
# Ids are caller text: quotes, backslashes and newlines must survive the filter expressions.
ODD_ID = 'o\'dd "id" \\ with\nnewline\r\ttab'


class CountingEmbedder(HashingEmbedder):
    def __init__(self) -> None:
        super().__init__(DIMENSIONS)
        self.calls = 0

    def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        self.calls += 1
        return super().embed(texts)


OpenStore = Callable[..., MilvusStore]


@pytest.fixture(params=["lite", "server"])
def open_store(
    request: pytest.FixtureRequest, tmp_path: Path, collection_prefix: str
) -> Iterator[OpenStore]:
    """Opens MilvusStores on one place: a Lite file, or this test's collections on the server.
    Every store opened is closed at the end."""
    if request.param == "lite":
        uri = str(tmp_path / "data" / "milvus.db")
    else:
        server: MilvusServer = request.getfixturevalue("milvus_server")
        uri = server.uri
    opened: list[MilvusStore] = []

    def open_(dimensions: int = DIMENSIONS, prefix: str = collection_prefix) -> MilvusStore:
        store = MilvusStore(uri, dimensions, timeout_s=10, collection_prefix=prefix)
        opened.append(store)
        return store

    yield open_
    for store in opened:
        store.close()
    if request.param == "server":
        drop_collections(uri, collection_prefix)


@pytest.fixture
def store(open_store: OpenStore) -> MilvusStore:
    return open_store()


@pytest.fixture
def index(store: MilvusStore) -> VectorIndex:
    index = VectorIndex(HashingEmbedder(DIMENSIONS), store)
    index.index_products(catalog.products())
    return index


def test_milk_finds_dairy_milks_first(index: VectorIndex) -> None:
    [matches] = index.search(["milk"], 5, set())
    assert len(matches) == 5
    assert all("Milk" in m.product.name and m.product.category == "dairy" for m in matches[:4])
    assert matches[0].product == catalog.products_by_id()[matches[0].product.product_id]
    similarities = [m.similarity for m in matches]
    assert similarities == sorted(similarities, reverse=True)
    assert 0 < similarities[-1] < similarities[0] <= 1


def test_batched_search_keeps_query_order(index: VectorIndex) -> None:
    found = index.search(["coffee", "dog food", "milk"], 2, set())
    assert [len(matches) for matches in found] == [2, 2, 2]
    assert "Coffee" in found[0][0].product.name
    assert found[1][0].product.product_id == "p-2501"
    assert "Milk" in found[2][0].product.name


def test_excluded_ids_never_come_back(index: VectorIndex) -> None:
    milks = {"p-1001", "p-1002", "p-1003", "p-1004"}
    [matches] = index.search(["milk"], 5, milks | {ODD_ID, "not-stored"})
    assert len(matches) == 5
    assert not milks & {m.product.product_id for m in matches}


def test_exclusions_can_leave_fewer_than_top_k(index: VectorIndex) -> None:
    keep = {"p-1001", "p-2501"}
    everything_else = {p.product_id for p in catalog.products()} - keep
    [matches] = index.search(["milk"], 50, everything_else)
    assert {m.product.product_id for m in matches} == keep


def test_upsert_replaces_by_id_and_keeps_odd_ids(index: VectorIndex, store: MilvusStore) -> None:
    renamed = Product("p-1001", "Goat Milk Quart", "dairy", "grocery", 6.5)
    assert index.index_products([renamed, Product(ODD_ID, "Odd Oat Milk", "dairy")]) == (2, 82)
    assert store.existing_product_ids({ODD_ID, "p-1001", "nope"}) == {ODD_ID, "p-1001"}
    [matches] = index.search(["Goat Milk Quart"], 1, set())
    assert matches[0].product == renamed


def test_upserts_are_chunked(store: MilvusStore) -> None:
    products = [Product(f"bulk-{i}", f"Bulk item {i}") for i in range(2_500)]
    VectorIndex(HashingEmbedder(DIMENSIONS), store).index_products(products)
    assert store.count_products() == 2_500
    assert len(store.existing_product_ids([p.product_id for p in products])) == 2_500


def test_profile_upsert_and_get(store: MilvusStore) -> None:
    index = VectorIndex(HashingEmbedder(DIMENSIONS), store)
    products = catalog.products()[:2]
    summary = index.upsert_profile(History.build(ODD_ID, products, [0, 0, 1], [1, 8, 8]))
    assert (summary.customer_id, summary.dimensions, summary.product_count) == (ODD_ID, 256, 2)
    profile = store.get_profile(ODD_ID)
    assert profile is not None
    assert profile.shape == (DIMENSIONS,)
    assert np.linalg.norm(profile) == pytest.approx(1.0, rel=1e-5)
    index.upsert_profile(History.build(ODD_ID, products, [1], [9]))
    replaced = store.get_profile(ODD_ID)
    assert replaced is not None
    assert replaced @ profile < 0.999
    assert store.get_profile("someone else") is None


def test_rewritten_profiles_do_not_pile_up_in_a_lite_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Milvus Lite keeps every row written since its last flush in memory, replaced ones too;
    the store flushes profiles every LITE_PROFILE_FLUSH_BYTES, so a customer whose profile is
    written again and again holds a bounded amount of memory (here, 64 profiles' worth)."""
    monkeypatch.setattr(store_module, "LITE_PROFILE_FLUSH_BYTES", 64 * 4 * DIMENSIONS)
    store = MilvusStore(str(tmp_path / "milvus.db"), DIMENSIONS)
    try:
        vectors = np.random.default_rng(0).standard_normal((1_000, DIMENSIONS), np.float32)
        store.upsert_profiles([StoredProfile("c-1", vectors[0], 1)])
        before = pa.total_allocated_bytes()
        for vector in vectors[1:]:
            store.upsert_profiles([StoredProfile("c-1", vector, 1)])
        # Unflushed, the 999 rows hold about 1.4 MB of Arrow buffers.
        assert pa.total_allocated_bytes() - before < 300_000
        latest = store.get_profile("c-1")
        assert latest is not None
        assert latest @ (vectors[-1] / np.linalg.norm(vectors[-1])) == pytest.approx(1, rel=1e-5)
    finally:
        store.close()


def test_data_survives_close_and_reopen(open_store: OpenStore) -> None:
    index = VectorIndex(HashingEmbedder(DIMENSIONS), open_store())
    index.ensure_catalog(catalog.products())
    profile = index.upsert_profile(History.build("c-1", catalog.products()[:1], [0], [1]))
    index.close()

    embedder = CountingEmbedder()
    store = open_store()
    reopened = VectorIndex(embedder, store)
    reopened.ensure_catalog(catalog.products())
    assert embedder.calls == 0
    assert reopened.index_products([]) == (0, len(catalog.products()))
    assert "Milk" in reopened.search(["milk"], 1, set())[0][0].product.name
    vector = store.get_profile("c-1")
    assert vector is not None and vector.shape == (DIMENSIONS,)
    assert profile.product_count == 1


def test_dimension_mismatch_is_refused(open_store: OpenStore, store: MilvusStore) -> None:
    store.close()
    with pytest.raises(FailedPrecondition, match="256 dimensions"):
        open_store(128)


def test_collection_prefix_separates_stores(
    open_store: OpenStore, index: VectorIndex, collection_prefix: str
) -> None:
    assert open_store(128, prefix=f"{collection_prefix}_other").count_products() == 0


def test_unreachable_server_is_unavailable() -> None:
    with pytest.raises(Unavailable, match=re.escape("connect failed on Milvus server http://")):
        MilvusStore("http://127.0.0.1:1", DIMENSIONS, timeout_s=1)


def test_local_path_must_end_in_db(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\.db"):
        MilvusStore(str(tmp_path / "milvus"), DIMENSIONS)


def test_ivf_on_a_small_catalog_still_fills_top_k(tmp_path: Path) -> None:
    """Milvus Lite trains at most one IVF list per row, so nprobe lists of a small segment hold
    fewer rows than a query asks for: the store asks again with every list scanned."""
    path = str(tmp_path / "milvus.db")
    ivf = IndexSpec("IVF_FLAT", {"nlist": 256}, {"nprobe": 16})
    store = MilvusStore(path, DIMENSIONS, index=ivf, collection_prefix="ivf")
    try:
        embedder = HashingEmbedder(DIMENSIONS)
        VectorIndex(embedder, store).index_products(catalog.products())
        milk = embedder.embed(["milk"])
        raw = MilvusClient(uri=path)
        raw.flush("ivf_products")  # a segment, whose IVF index is built in the background
        deadline = time.monotonic() + 30
        plain: list[list[object]] = []
        while time.monotonic() < deadline:
            plain = raw.search(
                "ivf_products",
                milk.tolist(),
                limit=50,
                search_params={"metric_type": "IP", "params": {"nprobe": 16}},
            )
            if len(plain[0]) < 50:
                break
            time.sleep(0.2)
        assert len(plain[0]) < 50, "the IVF index was not built in time"
        [matches] = store.search_products(milk, 50, ())
        assert len(matches) == 50
        assert [m.similarity for m in matches] == sorted(
            (m.similarity for m in matches), reverse=True
        )
    finally:
        store.close()
