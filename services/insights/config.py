"""Settings of the insights step: the language model it may ask, and how much of it to use."""

from __future__ import annotations

from dataclasses import dataclass

from pantree_common.config import secret_value, setting
from pantree_common.errors import ConfigError

STRUCTURED_OUTPUTS = ("json_schema", "guided_json", "nvext", "none")


@dataclass(frozen=True)
class InsightsConfig:
    """Where the language model is and the limits it is used within; without a URL every
    insight comes from the rules (services/insights/fallback.py)."""

    llm_base_url: str = setting(
        "PANTREE_LLM_BASE_URL",
        "",
        "OpenAI-compatible chat API the insights step asks for related products and reasons "
        "(NVIDIA NIM, build.nvidia.com, vLLM), for example http://nim:8000/v1; empty: rule-based "
        "insights only.",
    )
    """With or without the trailing /v1."""
    llm_model: str = setting(
        "PANTREE_LLM_MODEL", "meta/llama-3.1-8b-instruct", "Chat model on PANTREE_LLM_BASE_URL."
    )
    """As the server lists it under /v1/models."""
    llm_api_key: str = setting(
        "PANTREE_LLM_API_KEY",
        "",
        "API key sent as a bearer token (nvapi-... on build.nvidia.com); empty for a local NIM.",
        secret=True,
    )
    """Never logged nor returned by GetConfig."""
    llm_api_key_file: str = setting(
        "PANTREE_LLM_API_KEY_FILE",
        "",
        "File holding the API key (a mounted secret), read at start-up when PANTREE_LLM_API_KEY "
        "is empty.",
    )
    """So a Kubernetes secret can be mounted instead of put in the environment."""
    llm_structured_output: str = setting(
        "PANTREE_LLM_STRUCTURED_OUTPUT",
        "json_schema",
        "How replies are held to the JSON schema: json_schema (response_format; OpenAI, vLLM, "
        "current NIM), guided_json (NIM guided decoding), nvext (older NIM), none (prompt only).",
    )
    """Every reply is validated whatever the server enforced."""
    llm_timeout_s: float = setting(
        "PANTREE_LLM_TIMEOUT_S",
        8.0,
        "Longest the language model may take per EnrichCandidates call, retries included, in "
        "seconds; the caller's shorter deadline wins.",
    )
    """Candidates still unanswered then keep their rule-based insight."""
    llm_attempts: int = setting(
        "PANTREE_LLM_ATTEMPTS",
        3,
        "Attempts per chat completion (first included) on 429, 5xx and timeouts.",
    )
    """Backoff is jittered and honours Retry-After, within the deadline."""
    llm_requests_per_minute: int = setting(
        "PANTREE_LLM_REQUESTS_PER_MINUTE",
        60,
        "Chat completions this process may start per minute.",
    )
    """A token bucket: a minute's worth may come in a burst."""
    llm_tokens_per_minute: int = setting(
        "PANTREE_LLM_TOKENS_PER_MINUTE",
        60000,
        "Tokens (prompt estimate plus PANTREE_LLM_MAX_TOKENS) this process may spend per minute.",
    )
    """A call that would have to wait past its deadline for the bucket is not made."""
    llm_max_tokens: int = setting(
        "PANTREE_LLM_MAX_TOKENS", 300, "Most tokens of one reply (16-4096)."
    )
    """A reply cut short is not valid JSON and falls back."""
    llm_candidates: int = setting(
        "PANTREE_LLM_CANDIDATES",
        5,
        "Best candidates per request the model explains (1-200); the rest get rule-based insights.",
    )
    """Bounds the calls (they run concurrently) and tokens per request."""
    llm_interval_tolerance: float = setting(
        "PANTREE_LLM_INTERVAL_TOLERANCE",
        0.5,
        "How far the model's interval may stray from the statistical one, as a fraction of it "
        "(0.5: within ±50%); further and the reply is rejected.",
    )
    """The model words and picks; the numbers stay the statistics'."""
    llm_cache_size: int = setting(
        "PANTREE_LLM_CACHE_SIZE",
        1024,
        "Accepted replies kept in memory, keyed by prompt hash and model; 0 turns the cache off.",
    )
    """Least recently used entries go first."""

    @property
    def llm_enabled(self) -> bool:
        return bool(self.llm_base_url.strip())

    def validate(self) -> None:
        if self.llm_enabled and not self.llm_base_url.startswith(("http://", "https://")):
            raise ConfigError(
                f"PANTREE_LLM_BASE_URL must be an http(s) URL, got {self.llm_base_url!r}"
            )
        if self.llm_enabled and not self.llm_model.strip():
            raise ConfigError("PANTREE_LLM_BASE_URL needs PANTREE_LLM_MODEL")
        if self.llm_structured_output not in STRUCTURED_OUTPUTS:
            raise ConfigError(
                "PANTREE_LLM_STRUCTURED_OUTPUT must be one of "
                f"{', '.join(STRUCTURED_OUTPUTS)}, got {self.llm_structured_output!r}"
            )
        limits = {
            "PANTREE_LLM_TIMEOUT_S": (self.llm_timeout_s, 0.001, 600),
            "PANTREE_LLM_ATTEMPTS": (self.llm_attempts, 1, 10),
            "PANTREE_LLM_REQUESTS_PER_MINUTE": (self.llm_requests_per_minute, 1, 1e6),
            "PANTREE_LLM_TOKENS_PER_MINUTE": (self.llm_tokens_per_minute, 1, 1e9),
            "PANTREE_LLM_MAX_TOKENS": (self.llm_max_tokens, 16, 4096),
            "PANTREE_LLM_CANDIDATES": (self.llm_candidates, 1, 200),
            "PANTREE_LLM_INTERVAL_TOLERANCE": (self.llm_interval_tolerance, 0, 10),
            "PANTREE_LLM_CACHE_SIZE": (self.llm_cache_size, 0, 1e6),
        }
        for name, (value, low, high) in limits.items():
            if not low <= value <= high:
                raise ConfigError(f"{name} must be {low:g}-{high:g}, got {value}")

    def api_key(self) -> str:
        """PANTREE_LLM_API_KEY, else the content of PANTREE_LLM_API_KEY_FILE, else ""."""
        return secret_value(self.llm_api_key, self.llm_api_key_file, "PANTREE_LLM_API_KEY_FILE")
