"""Settings of the vectors step."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pantree_common.config import setting
from pantree_common.errors import ConfigError

EMBEDDERS = ("hashing",)


@dataclass(frozen=True)
class VectorsConfig:
    """Where vectors are stored and how they are made."""

    data_dir: str = setting(
        "PANTREE_DATA_DIR",
        "~/.local/share/pantree",
        "Directory for local data (the Milvus Lite file lives here).",
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
    embedder: str = setting(
        "PANTREE_EMBEDDER", "hashing", "Text embedder: hashing (dependency-free)."
    )
    """Which Embedder implementation to load."""
    embedding_dimensions: int = setting(
        "PANTREE_EMBEDDING_DIMENSIONS", 256, "Length of hashing-embedder vectors (64-4096)."
    )
    """Changing it needs a fresh vector store."""

    def validate(self) -> None:
        if self.embedder not in EMBEDDERS:
            raise ConfigError(
                f"PANTREE_EMBEDDER must be one of {', '.join(EMBEDDERS)}, got {self.embedder!r}"
            )
        if not 64 <= self.embedding_dimensions <= 4096:
            raise ConfigError(
                f"PANTREE_EMBEDDING_DIMENSIONS must be 64-4096, got {self.embedding_dimensions}"
            )
        if self.milvus_timeout_s <= 0:
            raise ConfigError("PANTREE_MILVUS_TIMEOUT_S must be > 0")

    @property
    def store_uri(self) -> str:
        """The Milvus server URI, or the Milvus Lite file under the data directory."""
        return self.milvus_uri or str(Path(self.data_dir).expanduser() / "milvus.db")
