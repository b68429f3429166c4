from collections.abc import Sequence

import numpy as np
import pytest
from numpy.typing import NDArray

from pantree_common.domain import catalog
from pantree_common.domain.history import History, Product
from pantree_common.errors import InvalidArgument
from services.vectors.embedding import HashingEmbedder, product_text
from services.vectors.index import (
    CACHE_DEPTH,
    CACHE_TTL_S,
    RECENCY_HALF_LIFE_DAYS,
    ProfileSummary,
    VectorIndex,
    popular_first,
    profile_weights,
)
from services.vectors.store import StoredMatch, VectorStore
from tests.unit.vectors.memory_store import MemoryStore

MILK = Product("p-milk", "Whole Milk 1 Gallon", "dairy", "grocery", 3.89)
DOG = Product("p-dog", "Dry Dog Food 15 lb", "pet", "drug gm", 24.99)
UNBOUGHT = Product("p-tea", "Green Tea Bags 40 ct", "coffee & tea", "grocery", 4.49)


class CountingEmbedder:
    """Wraps the hashing embedder and records each call's texts."""

    def __init__(self) -> None:
        self._inner = HashingEmbedder(128)
        self.name = self._inner.name
        self.dimensions = self._inner.dimensions
        self.calls: list[list[str]] = []

    def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        self.calls.append(list(texts))
        return self._inner.embed(texts)


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def embedder() -> CountingEmbedder:
    return CountingEmbedder()


@pytest.fixture
def index(embedder: CountingEmbedder, store: MemoryStore) -> VectorIndex:
    checked: VectorStore = store  # the test store must satisfy the Protocol
    return VectorIndex(embedder, checked)


def test_index_products_reports_indexed_and_total(index: VectorIndex, store: MemoryStore) -> None:
    assert index.index_products(catalog.products()) == (81, 81)
    assert index.index_products(catalog.products()[:3]) == (3, 81)
    assert index.index_products([Product("p-new", "Rye Bread")]) == (1, 82)
    product, vector = store.products["p-1001"]
    np.testing.assert_array_equal(vector, HashingEmbedder(128).embed([product_text(product)])[0])


def test_index_nothing_embeds_nothing(index: VectorIndex, embedder: CountingEmbedder) -> None:
    assert index.index_products([]) == (0, 0)
    assert embedder.calls == []


def test_search_is_one_embed_and_one_store_search(
    index: VectorIndex, embedder: CountingEmbedder, store: MemoryStore
) -> None:
    index.index_products(catalog.products())
    embedder.calls.clear()
    queries = ["milk", "coffee", "dog food"]
    found = index.search(queries, 3, {"p-1001"})
    assert embedder.calls == [queries]
    # One search fetches enough neighbours to cache; exclusions are applied on them.
    assert store.searches == [(3, CACHE_DEPTH, frozenset())]
    assert [len(matches) for matches in found] == [3, 3, 3]
    assert all(m.product.product_id != "p-1001" for m in found[0])
    assert "Milk" in found[0][0].product.name
    assert "Coffee" in found[1][0].product.name
    assert found[2][0].product.product_id == "p-2501"


def test_search_without_queries_calls_nothing(
    index: VectorIndex, embedder: CountingEmbedder, store: MemoryStore
) -> None:
    assert index.search([], 5, set()) == []
    assert (embedder.calls, store.searches) == ([], [])


def _history(product_index: list[int], days: list[int]) -> History:
    return History.build("c-1", [MILK, DOG, UNBOUGHT], product_index, days)


def test_weights_count_purchase_days_not_events() -> None:
    # Milk twice on day 100 and once on day 110; dog food once on day 110.
    indexes, weights = profile_weights(_history([0, 0, 0, 1], [100, 100, 110, 110]))
    assert indexes.tolist() == [0, 1]
    np.testing.assert_allclose(weights, [2.0, 1.0])


def test_weights_halve_per_half_life_since_the_last_purchase() -> None:
    half_life = int(RECENCY_HALF_LIFE_DAYS)
    days = [0, 10, 20, 20 + 2 * half_life]
    indexes, weights = profile_weights(_history([0, 0, 0, 1], days))
    assert indexes.tolist() == [0, 1]
    np.testing.assert_allclose(weights, [3 * 0.25, 1.0])


def test_profile_is_the_normalised_weighted_mean(index: VectorIndex, store: MemoryStore) -> None:
    history = _history([0, 0, 0, 1], [100, 107, 114, 114])
    summary = index.upsert_profile(history)
    assert summary == ProfileSummary("c-1", 128, 2)
    milk, dog = HashingEmbedder(128).embed([product_text(MILK), product_text(DOG)])
    expected = 3 * milk + dog
    vector, count = store.profiles["c-1"]
    np.testing.assert_allclose(vector, expected / np.linalg.norm(expected), rtol=1e-5)
    assert count == 2
    assert vector.dtype == np.float32
    assert (vector @ milk) > (vector @ dog)


def test_recent_purchases_outweigh_old_habits(index: VectorIndex, store: MemoryStore) -> None:
    # Milk on many days a year ago; dog food once, last week.
    history = _history([0, 0, 0, 0, 1], [0, 7, 14, 21, 380])
    index.upsert_profile(history)
    profile = store.get_profile("c-1")
    assert profile is not None
    milk, dog = HashingEmbedder(128).embed([product_text(MILK), product_text(DOG)])
    assert profile @ dog > profile @ milk


def test_profile_of_an_empty_history_is_invalid(index: VectorIndex) -> None:
    with pytest.raises(InvalidArgument) as error:
        index.upsert_profile(_history([], []))
    assert error.value.violations[0].field == "history.product_indexes"


def test_ensure_catalog_indexes_once(
    index: VectorIndex, embedder: CountingEmbedder, store: MemoryStore
) -> None:
    index.ensure_catalog(catalog.products())
    assert store.count_products() == 81
    assert len(embedder.calls) == 1
    index.ensure_catalog(catalog.products())
    assert len(embedder.calls) == 1


def test_ensure_catalog_reindexes_when_some_are_missing(
    index: VectorIndex, embedder: CountingEmbedder, store: MemoryStore
) -> None:
    index.index_products(catalog.products()[:10])
    index.ensure_catalog(catalog.products())
    assert store.count_products() == 81
    assert len(embedder.calls[-1]) == 81


def test_close_closes_the_store(index: VectorIndex, store: MemoryStore) -> None:
    index.close()
    assert store.closed


def test_repeated_texts_are_answered_from_the_cache(
    index: VectorIndex, embedder: CountingEmbedder, store: MemoryStore
) -> None:
    index.index_products(catalog.products())
    first = index.search(["milk", "coffee"], 3, set())
    embedder.calls.clear()
    store.searches.clear()
    again = index.search(["coffee", "milk", "eggs"], 3, {"p-1001"})
    assert embedder.calls == [["eggs"]], "only the new text is embedded"
    assert len(store.searches) == 1
    assert again[0] == first[1]
    assert [m.product.product_id for m in again[1]] == [
        m.product.product_id
        for m in index.search(["milk"], 4, set())[0]
        if m.product.product_id != "p-1001"
    ][:3]


def test_indexing_products_or_time_invalidates_the_cache(
    embedder: CountingEmbedder, store: MemoryStore
) -> None:
    now = [1000.0]
    index = VectorIndex(embedder, store, clock=lambda: now[0])
    index.index_products(catalog.products())
    index.search(["rye bread"], 3, set())
    index.index_products([Product("p-rye", "Rye Bread Loaf", "bakery")])
    assert index.search(["rye bread"], 1, set())[0][0].product.product_id == "p-rye"
    embedder.calls.clear()
    index.search(["rye bread"], 1, set())
    assert embedder.calls == []
    now[0] += CACHE_TTL_S + 1
    index.search(["rye bread"], 1, set())
    assert embedder.calls == [["rye bread"]]


def test_exclusions_beyond_the_cached_depth_fall_back_to_a_direct_search(
    index: VectorIndex, store: MemoryStore
) -> None:
    index.index_products(catalog.products())
    everything_near = [m.product.product_id for m in index.search(["milk"], CACHE_DEPTH, set())[0]]
    store.searches.clear()
    found = index.search(["milk"], 2, set(everything_near))
    assert store.searches == [(1, 2, frozenset(everything_near))]
    assert len(found[0]) == 2
    assert not {m.product.product_id for m in found[0]} & set(everything_near)


def _match(product_id: str, similarity: float) -> StoredMatch:
    return StoredMatch(Product(product_id, product_id, "dairy"), similarity)


def test_popular_first_trades_similarity_for_catalog_rank() -> None:
    # Ranks 0, 9 and 9,999: log10(rank + 1) = 0, 1 and 4; unranked counts as the last (10,000).
    rank = {"staple": 0, "common": 9, "rare": 9_999, **{f"x{i}": 100 + i for i in range(9_997)}}
    matches = [_match("rare", 0.9), _match("unranked", 0.89), _match("common", 0.8)]
    matches += [_match("staple", 0.72), _match("tie", 0.72)]
    # Scores with 0.05: rare 0.7, unranked ~0.69, common 0.75, staple 0.72, tie (unranked) ~0.52.
    best = popular_first(matches, rank, 0.05, 3)
    assert [m.product.product_id for m in best] == ["common", "staple", "rare"]
    assert [m.similarity for m in best] == [0.8, 0.72, 0.9], "each keeps its own similarity"
    assert popular_first(matches, rank, 0.0, 5) == matches, "no weight: similarity order"
    equal = [_match("a", 0.5), _match("b", 0.5)]
    assert popular_first(equal, {}, 0.05, 2) == equal, "equal scores keep similarity order"
    assert popular_first([], rank, 0.05, 1) == []
