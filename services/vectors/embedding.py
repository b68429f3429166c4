"""Text embedders: the vectors step compares products by the cosine of these vectors."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
from numpy.typing import NDArray
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.preprocessing import normalize

from pantree_common.domain.history import Product


class Embedder(Protocol):
    """Turns texts into fixed-length vectors; stored vectors are only comparable while the
    name and dimensions stay the same."""

    name: str
    dimensions: int

    def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """One L2-normalised row per text (all zeros only for a text with no features)."""
        ...


def product_text(product: Product) -> str:
    """The text embedded for a product: the category pulls same-aisle products together."""
    return f"{product.name} {product.category}".strip()


class HashingEmbedder:
    """Character 3-5-grams plus whole words, hashed into `dimensions` buckets.

    Needs no model download and no fitting, and murmurhash makes it identical in every process,
    so vectors stored by one run stay valid in the next. Character n-grams match spelling
    variants ("yogurt" / "yoghurt", plurals); words add weight to exact term matches.
    """

    def __init__(self, dimensions: int = 256) -> None:
        if dimensions < 1:
            raise ValueError(f"dimensions must be >= 1, got {dimensions}")
        self.name = f"hashing-{dimensions}"
        self.dimensions = dimensions
        common = {
            "n_features": dimensions,
            "alternate_sign": False,
            "norm": None,
            "dtype": np.float32,
        }
        self._chars = HashingVectorizer(analyzer="char_wb", ngram_range=(3, 5), **common)
        self._words = HashingVectorizer(analyzer="word", **common)

    def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        counts = self._chars.transform(texts) + self._words.transform(texts)
        dense: NDArray[np.float32] = normalize(counts).toarray().astype(np.float32, copy=False)
        return dense
