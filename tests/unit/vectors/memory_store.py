"""An exact in-memory VectorStore, so VectorIndex logic is tested without Milvus."""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np
from numpy.typing import NDArray

from pantree_common.domain.history import Product
from services.vectors.store import StoredMatch, StoredProfile


class MemoryStore:
    """Brute-force cosine search over dicts; records every search so tests can count them."""

    def __init__(self) -> None:
        self.products: dict[str, tuple[Product, NDArray[np.float32]]] = {}
        self.profiles: dict[str, tuple[NDArray[np.float32], int]] = {}
        self.searches: list[tuple[int, int, frozenset[str]]] = []
        self.profile_batches: list[int] = []
        self.closed = False

    def upsert_products(self, products: Sequence[Product], vectors: NDArray[np.float32]) -> None:
        for product, vector in zip(products, vectors, strict=True):
            self.products[product.product_id] = (product, vector)

    def count_products(self) -> int:
        return len(self.products)

    def existing_product_ids(self, product_ids: Collection[str]) -> set[str]:
        return {i for i in product_ids if i in self.products}

    def search_products(
        self, vectors: NDArray[np.float32], top_k: int, exclude_ids: Collection[str]
    ) -> list[list[StoredMatch]]:
        self.searches.append((len(vectors), top_k, frozenset(exclude_ids)))
        candidates = [(p, v) for p, v in self.products.values() if p.product_id not in exclude_ids]
        found = []
        for query in vectors:
            scored = sorted(
                ((float(v @ query), p) for p, v in candidates), key=lambda pair: -pair[0]
            )
            found.append([StoredMatch(p, s) for s, p in scored[:top_k]])
        return found

    def upsert_profiles(self, profiles: Sequence[StoredProfile]) -> None:
        self.profile_batches.append(len(profiles))
        for profile in profiles:
            self.profiles[profile.customer_id] = (profile.vector, profile.product_count)

    def get_profile(self, customer_id: str) -> NDArray[np.float32] | None:
        stored = self.profiles.get(customer_id)
        return None if stored is None else stored[0]

    def close(self) -> None:
        self.closed = True
