"""Settings of the vectors step."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from pantree_common.config import setting
from pantree_common.errors import ConfigError

EMBEDDERS = ("auto", "minilm", "hashing", "openai")
INPUT_TYPES = ("", "query", "passage")
MAX_BATCH_SIZE = 8192
_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


MILVUS_INDEXES = ("ivf_flat", "flat")


@dataclass(frozen=True)
class VectorsConfig:
    """Where vectors are stored and how they are made."""

    data_dir: str = setting(
        "PANTREE_DATA_DIR",
        "~/.local/share/pantree",
        "Directory for local data: the Milvus Lite file, the built catalog, downloaded data sets.",
    )
    """Created on start-up when missing."""
    milvus_uri: str = setting(
        "PANTREE_MILVUS_URI",
        "",
        "Milvus server URI (http://host:19530); empty uses a Milvus Lite file in PANTREE_DATA_DIR.",
    )
    """Same code for the embedded file and a server."""
    milvus_token: str = setting(
        "PANTREE_MILVUS_TOKEN", "", "Milvus credentials (user:password or API key).", secret=True
    )
    """Never logged nor returned by GetConfig."""
    milvus_timeout_s: float = setting(
        "PANTREE_MILVUS_TIMEOUT_S", 10.0, "Deadline of one Milvus call, in seconds."
    )
    """Bounds every insert and search."""
    milvus_index: str = setting(
        "PANTREE_MILVUS_INDEX",
        "ivf_flat",
        "Vector index of new collections: ivf_flat (approximate, about 95% of the exact top 10, "
        "twice as fast on the 92k catalog) or flat (exact).",
    )
    """Applies when a collection is created; an existing one keeps its index."""
    embedder: str = setting(
        "PANTREE_EMBEDDER",
        "auto",
        "Text embedder: minilm (all-MiniLM-L6-v2, offline), hashing (dependency-free), openai "
        "(an OpenAI-compatible embeddings endpoint such as NIM) or auto (minilm when installed, "
        "else hashing).",
    )
    """Which Embedder implementation to load; each one stores its vectors in its own Milvus
    collections, so switching never mixes vectors of two embedders."""
    embedding_dimensions: int = setting(
        "PANTREE_EMBEDDING_DIMENSIONS", 256, "Length of hashing-embedder vectors (64-4096)."
    )
    """Only the hashing embedder has a choice: MiniLM makes 384, an endpoint what its model
    makes."""
    embedder_device: str = setting(
        "PANTREE_EMBEDDER_DEVICE",
        "auto",
        "Where MiniLM runs: cpu, cuda (or cuda:N), or auto (cuda when torch sees a GPU).",
    )
    """Vectors agree across devices to about 1e-3 (fp16 on a GPU)."""
    embedder_batch_size: int = setting(
        "PANTREE_EMBEDDER_BATCH_SIZE",
        0,
        "Texts per MiniLM forward pass or per embeddings request; 0 picks per backend "
        "(1024 on a GPU, 64 on a CPU, 50 per request).",
    )
    """Bounds the memory of one step; results do not depend on it."""
    embeddings_url: str = setting(
        "PANTREE_EMBEDDINGS_URL",
        "",
        "Base URL of an OpenAI-compatible embeddings API (http://nim:8000 or .../v1); "
        "needed by PANTREE_EMBEDDER=openai.",
    )
    """The embedder POSTs to `<url>/v1/embeddings`."""
    embeddings_model: str = setting(
        "PANTREE_EMBEDDINGS_MODEL",
        "",
        "Model the embeddings endpoint serves (for example nvidia/nv-embedqa-e5-v5).",
    )
    """Part of the collection names: another model gets fresh collections."""
    embeddings_api_key: str = setting(
        "PANTREE_EMBEDDINGS_API_KEY",
        "",
        "Bearer token of the embeddings endpoint; empty sends none.",
        secret=True,
    )
    """Never logged nor returned by GetConfig."""
    embeddings_input_type: str = setting(
        "PANTREE_EMBEDDINGS_INPUT_TYPE",
        "",
        "input_type sent to the embeddings endpoint (query or passage, as NIM retrieval models "
        "need); empty sends none.",
    )
    """OpenAI itself rejects the field, so it is only sent when set."""
    embeddings_timeout_s: float = setting(
        "PANTREE_EMBEDDINGS_TIMEOUT_S",
        30.0,
        "Deadline of one embeddings request, in seconds (busy or failing endpoints are retried).",
    )
    """Applies to each attempt; 429 and 5xx answers are retried a few times with backoff."""

    def validate(self) -> None:
        if self.embedder not in EMBEDDERS:
            raise ConfigError(
                f"PANTREE_EMBEDDER must be one of {', '.join(EMBEDDERS)}, got {self.embedder!r}"
            )
        if not 64 <= self.embedding_dimensions <= 4096:
            raise ConfigError(
                f"PANTREE_EMBEDDING_DIMENSIONS must be 64-4096, got {self.embedding_dimensions}"
            )
        if not _DEVICE.fullmatch(self.embedder_device):
            raise ConfigError(
                "PANTREE_EMBEDDER_DEVICE must be auto, cpu, cuda or cuda:N, "
                f"got {self.embedder_device!r}"
            )
        if not 0 <= self.embedder_batch_size <= MAX_BATCH_SIZE:
            raise ConfigError(
                f"PANTREE_EMBEDDER_BATCH_SIZE must be 0-{MAX_BATCH_SIZE}, "
                f"got {self.embedder_batch_size}"
            )
        if self.embeddings_input_type not in INPUT_TYPES:
            raise ConfigError(
                "PANTREE_EMBEDDINGS_INPUT_TYPE must be query, passage or empty, "
                f"got {self.embeddings_input_type!r}"
            )
        if self.embeddings_timeout_s <= 0:
            raise ConfigError("PANTREE_EMBEDDINGS_TIMEOUT_S must be > 0")
        if self.embedder == "openai":
            if not self.embeddings_url.startswith(("http://", "https://")):
                raise ConfigError(
                    "PANTREE_EMBEDDER=openai needs PANTREE_EMBEDDINGS_URL (http:// or https://), "
                    f"got {self.embeddings_url!r}"
                )
            if not self.embeddings_model.strip():
                raise ConfigError("PANTREE_EMBEDDER=openai needs PANTREE_EMBEDDINGS_MODEL")
        if self.milvus_timeout_s <= 0:
            raise ConfigError("PANTREE_MILVUS_TIMEOUT_S must be > 0")
        if self.milvus_index not in MILVUS_INDEXES:
            raise ConfigError(
                f"PANTREE_MILVUS_INDEX must be one of {', '.join(MILVUS_INDEXES)}, "
                f"got {self.milvus_index!r}"
            )

    @property
    def store_uri(self) -> str:
        """The Milvus server URI, or the Milvus Lite file under the data directory."""
        return self.milvus_uri or str(Path(self.data_dir).expanduser() / "milvus.db")
