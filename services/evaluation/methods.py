"""What a method under evaluation must provide: scores per (customer, item) pair at a cutoff.

The harness hands every method the same history (events before the cutoff) and judges the
scores against the next 28 days. A method never sees the test window.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from pantree_common.datasets.transactions import Transactions


@dataclass(frozen=True, eq=False)
class PairScores:
    """One row per scored (customer, item) pair; pairs not listed are never recommended."""

    customer: NDArray[np.int32]
    item: NDArray[np.int32]
    score: NDArray[np.float64]
    """Ranking score for Task A: higher is recommended first."""
    p_rebuy: NDArray[np.float64] | None = None
    """Probability that the customer buys the item in [cutoff, cutoff + horizon) (Task B)."""
    interval_days: NDArray[np.float64] | None = None
    """Predicted days from the last purchase before the cutoff to the next one (Task B)."""


class Method(Protocol):
    """A recommender under evaluation."""

    name: str

    def score(self, history: Transactions, cutoff_day: int, horizon_days: int) -> PairScores:
        """Scores from `history` (every event is before `cutoff_day`)."""
        ...
