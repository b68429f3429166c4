import numpy as np
import pytest

from services.vectors.embedding import Embedder, HashingEmbedder


def test_shape_dtype_and_name() -> None:
    embedder: Embedder = HashingEmbedder(64)
    vectors = embedder.embed(["Whole Milk 1 Gallon", "Dog Food"])
    assert vectors.shape == (2, 64)
    assert vectors.dtype == np.float32
    assert (embedder.name, embedder.dimensions) == ("hashing-64", 64)


def test_rows_are_unit_length_and_featureless_text_is_zero() -> None:
    vectors = HashingEmbedder().embed(["Whole Milk 1 Gallon", "a", "", "   "])
    np.testing.assert_allclose(np.linalg.norm(vectors[:2], axis=1), 1.0, rtol=1e-5)
    assert not vectors[2:].any()


def test_empty_batch() -> None:
    assert HashingEmbedder(32).embed([]).shape == (0, 32)


def test_rejects_non_positive_dimensions() -> None:
    with pytest.raises(ValueError, match="dimensions"):
        HashingEmbedder(0)


def test_similar_names_are_closer_than_unrelated() -> None:
    whole, two_percent, dog = HashingEmbedder().embed(
        ["Whole Milk 1 Gallon", "2% Milk", "Dog Food"]
    )
    assert whole @ two_percent > whole @ dog + 0.2
    assert two_percent @ dog < 0.3


def test_batching_does_not_change_a_row() -> None:
    embedder = HashingEmbedder()
    alone = embedder.embed(["Greek Yogurt"])[0]
    batched = embedder.embed(["Dog Food", "Greek Yogurt", "Coffee Pods"])[1]
    np.testing.assert_array_equal(alone, batched)


def test_hashing_is_pinned() -> None:
    """Stored vectors outlive the process: the buckets of a text must never change (murmurhash
    with a fixed seed, independent of PYTHONHASHSEED and of the sklearn release)."""
    vector = HashingEmbedder().embed(["milk"])[0]
    buckets = np.flatnonzero(vector)
    assert buckets.tolist() == [37, 83, 134, 145, 153, 170, 228, 244, 254]
    # Ten features (nine character n-grams and the word); two share bucket 170.
    np.testing.assert_allclose(
        vector[buckets] * np.sqrt(12), [1, 1, 1, 1, 1, 2, 1, 1, 1], rtol=1e-6
    )
