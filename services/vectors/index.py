"""What the vectors service does, without gRPC: embed, store, summarise and search."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from pantree.domain.v1 import product_pb2

from pantree_common.domain.history import (
    MAX_PRODUCTS,
    History,
    Product,
    check_products,
    check_text,
)
from pantree_common.errors import Collector, InvalidArgument
from pantree_common.metrics import SIMILAR_LOOKUPS
from services.vectors.embedding import Embedder, product_text
from services.vectors.store import StoredMatch, StoredProfile, VectorStore

log = logging.getLogger(__name__)

MAX_QUERIES = 200
MAX_QUERY_CHARS = 200
DEFAULT_TOP_K = 5
MAX_TOP_K = 50
MAX_EXCLUDES = 10_000
# A product last bought this many days before the history's latest purchase counts half as much
# in the profile: tastes drift, so the profile follows what the shopper buys now.
RECENCY_HALF_LIFE_DAYS = 90.0
# Similar-product lookups repeat across shoppers (the same catalog names), so each text's
# nearest neighbours are kept for a while: enough of them to serve any top_k after exclusions
# in the common case, expiring so that products indexed by another replica show up.
CACHE_DEPTH = MAX_TOP_K
CACHE_TEXTS = 20_000
CACHE_TTL_S = 300.0


@dataclass(frozen=True)
class ProfileSummary:
    """What was stored for a customer."""

    customer_id: str
    dimensions: int
    product_count: int


def profile_weights(history: History) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """The distinct purchased products (indexes into history.products) and their weights:
    the number of days each was bought, halved for every RECENCY_HALF_LIFE_DAYS between its
    last purchase and the history's latest one."""
    if history.event_count == 0:
        raise InvalidArgument.single(
            "history.product_indexes", "at least one purchase event is required"
        )
    products, inverse = np.unique(history.product_index, return_inverse=True)
    product_days = np.unique(np.stack([inverse, history.epoch_day]), axis=1)
    purchase_days = np.bincount(product_days[0], minlength=products.size)
    last_day = np.full(products.size, np.iinfo(np.int32).min, dtype=np.int64)
    np.maximum.at(last_day, inverse, history.epoch_day.astype(np.int64))
    age_days = int(history.epoch_day.max()) - last_day
    weights = purchase_days * 0.5 ** (age_days / RECENCY_HALF_LIFE_DAYS)
    return products.astype(np.int64), weights


class VectorIndex:
    """Ties an Embedder to a VectorStore: what the vectors service does."""

    def __init__(
        self, embedder: Embedder, store: VectorStore, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._embedder = embedder
        self._store = store
        self._clock = clock
        self._neighbours: OrderedDict[str, tuple[float, list[StoredMatch]]] = OrderedDict()
        self._vectors: OrderedDict[str, NDArray[np.float32]] = OrderedDict()
        self._lock = threading.Lock()

    def index_products(self, products: Sequence[Product]) -> tuple[int, int]:
        """Embed and store products; returns (indexed now, total stored)."""
        if products:
            vectors = self._embedder.embed([product_text(p) for p in products])
            self._store.upsert_products(products, vectors)
            with self._lock:
                self._neighbours.clear()
        return len(products), self._store.count_products()

    def profile(self, history: History) -> StoredProfile:
        """The customer's purchase-pattern vector: the weighted mean of the vectors of the
        products bought (see profile_weights), L2-normalised."""
        indexes, weights = profile_weights(history)
        vectors = self._embed([product_text(history.products[i]) for i in indexes])
        profile = weights @ vectors.astype(np.float64)
        norm = float(np.linalg.norm(profile))
        vector = (profile / norm if norm > 0 else profile).astype(np.float32)
        return StoredProfile(history.customer_id, vector, int(indexes.size))

    def store_profiles(self, profiles: Sequence[StoredProfile]) -> None:
        """Write profiles in one store call (many customers' writes grouped together)."""
        self._store.upsert_profiles(profiles)

    def upsert_profile(self, history: History) -> ProfileSummary:
        """Compute and store one customer's profile."""
        profile = self.profile(history)
        self.store_profiles([profile])
        return self.summary(profile)

    def summary(self, profile: StoredProfile) -> ProfileSummary:
        return ProfileSummary(profile.customer_id, self._embedder.dimensions, profile.product_count)

    def _embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """Embed texts, reusing the vectors of texts embedded before (product names repeat
        across customers; the embedder is deterministic)."""
        with self._lock:
            known = {t: self._vectors[t] for t in texts if t in self._vectors}
        missing = list(dict.fromkeys(t for t in texts if t not in known))
        if missing:
            fresh = self._embedder.embed(missing)
            with self._lock:
                for text, vector in zip(missing, fresh, strict=True):
                    known[text] = self._vectors[text] = vector
                while len(self._vectors) > CACHE_TEXTS:
                    self._vectors.popitem(last=False)
        if not texts:
            return np.zeros((0, self._embedder.dimensions), dtype=np.float32)
        return np.stack([known[t] for t in texts])

    def cached(
        self, query_texts: Sequence[str], top_k: int, exclude_ids: Collection[str]
    ) -> list[list[StoredMatch]] | None:
        """What `search` answers, when the cached neighbours of every text answer it alone
        (no embedding, no store call: cheap enough for the caller's thread); else None."""
        with self._lock:
            found = [self._fresh(text) for text in query_texts]
        neighbours = [matches for matches in found if matches is not None]
        if len(neighbours) < len(found):
            return None
        results = [_kept(matches, top_k, exclude_ids) for matches in neighbours]
        if any(_short(*pair, top_k) for pair in zip(results, neighbours, strict=True)):
            return None
        SIMILAR_LOOKUPS.labels("hit").inc(len(query_texts))
        return results

    def search(
        self, query_texts: Sequence[str], top_k: int, exclude_ids: Collection[str]
    ) -> list[list[StoredMatch]]:
        """The stored products closest to each text. Texts seen recently are answered from
        their cached neighbours; the others cost one embed call and one store search together."""
        with self._lock:
            neighbours = {text: self._fresh(text) for text in query_texts}
        missing = [text for text, found in neighbours.items() if found is None]
        SIMILAR_LOOKUPS.labels("hit").inc(len(neighbours) - len(missing))
        SIMILAR_LOOKUPS.labels("miss").inc(len(missing))
        if missing:
            fetched = self._store.search_products(self._embedder.embed(missing), CACHE_DEPTH, ())
            expires = self._clock() + CACHE_TTL_S
            with self._lock:
                for text, matches in zip(missing, fetched, strict=True):
                    neighbours[text] = matches
                    self._neighbours[text] = (expires, matches)
                    self._neighbours.move_to_end(text)
                while len(self._neighbours) > CACHE_TEXTS:
                    self._neighbours.popitem(last=False)
        results: list[list[StoredMatch]] = []
        short: list[int] = []
        for position, text in enumerate(query_texts):
            matches = neighbours[text] or []
            kept = _kept(matches, top_k, exclude_ids)
            if _short(kept, matches, top_k):
                short.append(position)
            results.append(kept)
        if short:  # exclusions removed more neighbours than are kept: ask the store directly
            direct = self._store.search_products(
                self._embedder.embed([query_texts[i] for i in short]), top_k, exclude_ids
            )
            for position, matches in zip(short, direct, strict=True):
                results[position] = matches
        return results

    def _fresh(self, text: str) -> list[StoredMatch] | None:
        """The cached neighbours of `text`, or None when absent or expired."""
        entry = self._neighbours.get(text)
        if entry is None or entry[0] < self._clock():
            return None
        return entry[1]

    def ensure_catalog(self, products: Sequence[Product]) -> None:
        """Index `products` unless the store already holds every one of their ids, so a restart
        over a persisted store costs one lookup instead of re-embedding the catalog."""
        wanted = {p.product_id for p in products}
        missing = wanted - self._store.existing_product_ids(wanted)
        if missing:
            indexed, total = self.index_products(products)
            log.info(
                "indexed %d catalog products (%d were missing); %d stored",
                indexed,
                len(missing),
                total,
            )

    def close(self) -> None:
        self._store.close()


def _kept(
    matches: Sequence[StoredMatch], top_k: int, exclude_ids: Collection[str]
) -> list[StoredMatch]:
    return [m for m in matches if m.product.product_id not in exclude_ids][:top_k]


def _short(kept: Sequence[StoredMatch], matches: Sequence[StoredMatch], top_k: int) -> bool:
    """Exclusions removed more cached neighbours than are kept: only the store can answer."""
    return len(kept) < top_k and len(matches) >= CACHE_DEPTH


def validate_search(
    query_texts: Sequence[str],
    top_k: int,
    exclude_ids: Sequence[str],
    popularity_weight: float = 0.0,
) -> int:
    """Check a search request against the proto limits; returns the effective top_k."""
    errors = Collector()
    if errors.check(
        1 <= len(query_texts) <= MAX_QUERIES,
        "query_texts",
        f"must hold 1 to {MAX_QUERIES} texts, got {len(query_texts)}",
    ):
        for i, text in enumerate(query_texts):
            check_text(errors, text, f"query_texts[{i}]", MAX_QUERY_CHARS, required=True)
    errors.check(
        0 <= top_k <= MAX_TOP_K,
        "top_k",
        f"must be 1 to {MAX_TOP_K} (0 means {DEFAULT_TOP_K}), got {top_k}",
    )
    errors.check(
        len(exclude_ids) <= MAX_EXCLUDES,
        "exclude_product_ids",
        f"at most {MAX_EXCLUDES} ids, got {len(exclude_ids)}",
    )
    errors.check(
        0 <= popularity_weight <= 1,  # NaN fails too
        "popularity_weight",
        f"must be 0 to 1, got {popularity_weight}",
    )
    errors.raise_if_any()
    return top_k or DEFAULT_TOP_K


def popular_first(
    matches: Sequence[StoredMatch], rank: Mapping[str, int], weight: float, top_k: int
) -> list[StoredMatch]:
    """The top_k of `matches` (most similar first) by similarity minus `weight` per tenfold
    catalog `rank` (unranked products count as the last); equal scores keep similarity order.
    A shopper typing "milk" means the milk households buy every week, not the rarest product
    whose name reads closest."""
    unranked = len(rank)
    scores = [
        m.similarity - weight * math.log10(rank.get(m.product.product_id, unranked) + 1)
        for m in matches
    ]
    order = sorted(range(len(matches)), key=lambda i: -scores[i])
    return [matches[i] for i in order[:top_k]]


def validate_products(products: Sequence[product_pb2.Product]) -> list[Product]:
    """Check an IndexProducts request; every bad field is reported with its path."""
    errors = Collector()
    if not errors.check(
        1 <= len(products) <= MAX_PRODUCTS,
        "products",
        f"must hold 1 to {MAX_PRODUCTS} products, got {len(products)}",
    ):
        errors.raise_if_any()
    check_products(errors, products, "products")
    errors.raise_if_any()
    return [Product.from_proto(p) for p in products]
