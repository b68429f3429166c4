"""Settings of the orchestrator: where the steps are and how long a call may take."""

from __future__ import annotations

from dataclasses import dataclass

from pantree_common.config import setting
from pantree_common.errors import ConfigError

STEP_NAMES = ("simulation", "vectors", "frequency", "insights", "recommendation")


@dataclass(frozen=True)
class OrchestratorConfig:
    """Upstream addresses and per-call budgets."""

    simulation_addr: str = setting(
        "SIMULATION_SERVICE_ADDR", "", "host:port of the simulation step; empty: this server."
    )
    """Empty is only valid when the step is served by the same process (`serve all`)."""
    vectors_addr: str = setting(
        "VECTORS_SERVICE_ADDR", "", "host:port of the vectors step; empty: this server."
    )
    """See simulation_addr."""
    frequency_addr: str = setting(
        "FREQUENCY_SERVICE_ADDR", "", "host:port of the frequency step; empty: this server."
    )
    """See simulation_addr."""
    insights_addr: str = setting(
        "INSIGHTS_SERVICE_ADDR", "", "host:port of the insights step; empty: this server."
    )
    """See simulation_addr."""
    recommendation_addr: str = setting(
        "RECOMMENDATION_SERVICE_ADDR",
        "",
        "host:port of the recommendation step; empty: this server.",
    )
    """See simulation_addr."""
    in_process_calls: bool = setting(
        "PANTREE_IN_PROCESS_CALLS",
        True,
        "Steps served by this same process are called through an in-process gRPC channel (the "
        "same stubs, serialisation and server interceptors, without HTTP/2); false dials this "
        "server's own port instead.",
    )
    """All-in-one mode only; docs/BENCHMARKS.md measures both (pantree_common/local.py)."""
    process_seed_timeout_s: float = setting(
        "PANTREE_PROCESS_SEED_TIMEOUT_S",
        30.0,
        "Deadline of a ProcessSeed stream whose caller set none, in seconds.",
    )
    """A caller's own shorter deadline always wins."""
    recommend_timeout_s: float = setting(
        "PANTREE_RECOMMEND_TIMEOUT_S",
        5.0,
        "Deadline of a Recommend call whose caller set none, in seconds.",
    )
    """A caller's own shorter deadline always wins."""
    insights_timeout_s: float = setting(
        "PANTREE_INSIGHTS_TIMEOUT_S",
        10.0,
        "Longest ProcessSeed waits for the insights step, in seconds, and never more than half "
        "of what the call has left; past it, or if the step fails, offers are ranked without "
        "insights.",
    )
    """Insights are an extra: the offers must arrive within the caller's deadline anyway."""
    enriched_candidates: int = setting(
        "PANTREE_ENRICHED_CANDIDATES",
        20,
        "How many top products get similar-product search and insights (1-200).",
    )
    """Bounds the work per request on the vectors and insights steps."""
    related_top_k: int = setting(
        "PANTREE_RELATED_TOP_K", 5, "Similar products looked up per candidate (1-50)."
    )
    """top_k of the batched similar-product search."""
    seed_min_similarity: float = setting(
        "PANTREE_SEED_MIN_SIMILARITY",
        0.5,
        "Least cosine similarity for a seed item to resolve to a catalog product (0-1); below "
        "it ProcessSeed refuses the item with INVALID_ARGUMENT.",
    )
    """What counts as "no such product" depends on the embedder; a refused item's message names
    the closest product and its score, so the bar can be checked against real names."""

    def validate(self) -> None:
        if min(self.process_seed_timeout_s, self.recommend_timeout_s, self.insights_timeout_s) <= 0:
            raise ConfigError(
                "PANTREE_PROCESS_SEED_TIMEOUT_S, PANTREE_RECOMMEND_TIMEOUT_S and "
                "PANTREE_INSIGHTS_TIMEOUT_S must be > 0"
            )
        if not 1 <= self.enriched_candidates <= 200:
            raise ConfigError(
                f"PANTREE_ENRICHED_CANDIDATES must be 1-200, got {self.enriched_candidates}"
            )
        if not 1 <= self.related_top_k <= 50:
            raise ConfigError(f"PANTREE_RELATED_TOP_K must be 1-50, got {self.related_top_k}")
        if not 0 <= self.seed_min_similarity <= 1:
            raise ConfigError(
                f"PANTREE_SEED_MIN_SIMILARITY must be 0-1, got {self.seed_min_similarity}"
            )

    def upstreams(self, own_address: str, local_steps: frozenset[str]) -> dict[str, str]:
        """Address of every step; an empty setting means this server, if it serves the step."""
        addresses: dict[str, str] = {}
        for step in STEP_NAMES:
            address = getattr(self, f"{step}_addr")
            if not address:
                if step not in local_steps:
                    raise ConfigError(
                        f"{step.upper()}_SERVICE_ADDR must be set: the {step} step is not served "
                        "by this process"
                    )
                address = own_address
            addresses[step] = address
        return addresses
