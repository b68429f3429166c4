"""Evaluation metrics, per customer then averaged, computed over all customers at once.

Task A (ranking), for a customer with truth set R and top-k list L:
    Recall@k = |L ∩ R| / |R|
    NDCG@k   = DCG@k / IDCG,  DCG@k = Σ_{rank r in L, item in R} 1 / log2(r + 1)  (r from 1),
               IDCG = Σ_{r=1}^{min(k, |R|)} 1 / log2(r + 1)  (capped; the literature's uncapped
               variant sums to |R| instead and is reported separately for last-basket data)
    PHR@k    = 1 if L ∩ R is not empty else 0
A customer the method scores nothing for gets 0 on all three.

Task B (rebuy probability and interval) on (customer, item) pairs:
    AUC   = roc_auc_score(rebought, p_rebuy) (None when only one class is present)
    Brier = mean (p - y)^2
    ECE   = Σ_b (n_b / n) |mean p in b - rebuy rate in b| over 10 equal-width bins of [0, 1]
            (p = 1 falls in the last bin)
    interval MAE, median AE and the share with |error| <= 7 days, on rebought pairs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from sklearn.metrics import roc_auc_score

ECE_BINS = 10
WITHIN_DAYS = 7.0


@dataclass(frozen=True, eq=False)
class RankingMetrics:
    """Per-customer values, aligned with the customers they were computed for."""

    recall: NDArray[np.float64]
    ndcg: NDArray[np.float64]
    ndcg_uncapped: NDArray[np.float64]
    phr: NDArray[np.float64]


def rank_within_customer(
    customer: NDArray[np.int32], key: NDArray[np.int64], score: NDArray[np.float64]
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Order of the rows by customer, falling score, then key; and each row's 0-based rank
    inside its customer (in that order). Ties in score go to the lower key (item index)."""
    order = np.lexsort((key, -score, customer)).astype(np.int64)
    ordered_customer = customer[order]
    starts = np.concatenate(([True], ordered_customer[1:] != ordered_customer[:-1]))
    start_positions = np.flatnonzero(starts)
    group = np.cumsum(starts) - 1
    rank = np.arange(order.size, dtype=np.int64) - start_positions[group]
    return order, rank


def _discounts(count: int) -> NDArray[np.float64]:
    """Cumulative discounts: element j is Σ_{r=1}^{j} 1 / log2(r + 1), element 0 is 0."""
    return np.concatenate(([0.0], np.cumsum(1.0 / np.log2(np.arange(2, count + 2)))))


def ranking_metrics(
    customers: NDArray[np.int32],
    truth_customer: NDArray[np.int32],
    truth_key: NDArray[np.int64],
    scored_customer: NDArray[np.int32],
    scored_key: NDArray[np.int64],
    scored_value: NDArray[np.float64],
    k: int,
) -> RankingMetrics:
    """Recall, NDCG (capped and uncapped) and PHR at k for each of `customers`.

    `truth_*` list each customer's truth pairs (keys unique); `scored_*` are the method's scored
    pairs (keys unique). Scored pairs of other customers are ignored.
    """
    bound = int(max(customers.max(initial=-1), truth_customer.max(initial=-1))) + 1
    bound = max(bound, int(scored_customer.max(initial=-1)) + 1)
    wanted = np.zeros(bound, dtype=np.bool_)
    wanted[customers] = True
    keep = wanted[scored_customer]
    customer, key, value = scored_customer[keep], scored_key[keep], scored_value[keep]
    order, rank = rank_within_customer(customer, key, value)
    top = rank < k
    top_customer, top_key, top_rank = customer[order][top], key[order][top], rank[top]

    sorted_truth = np.sort(truth_key)
    position = np.minimum(np.searchsorted(sorted_truth, top_key), max(sorted_truth.size - 1, 0))
    hit = (
        sorted_truth[position] == top_key
        if sorted_truth.size
        else np.zeros(top_key.size, dtype=np.bool_)
    )

    hits = np.bincount(top_customer[hit], minlength=bound)[customers].astype(np.float64)
    gains = 1.0 / np.log2(top_rank[hit] + 2.0)
    dcg = np.bincount(top_customer[hit], weights=gains, minlength=bound)[customers]
    truth_size = np.bincount(truth_customer, minlength=bound)[customers]
    cumulative = _discounts(int(truth_size.max(initial=0)))
    ideal_capped = cumulative[np.minimum(truth_size, k)]
    ideal_full = cumulative[truth_size]
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = np.where(truth_size > 0, hits / truth_size, 0.0)
        ndcg = np.where(ideal_capped > 0, dcg / ideal_capped, 0.0)
        ndcg_uncapped = np.where(ideal_full > 0, dcg / ideal_full, 0.0)
    return RankingMetrics(
        recall=recall, ndcg=ndcg, ndcg_uncapped=ndcg_uncapped, phr=(hits > 0).astype(np.float64)
    )


def auc(labels: NDArray[np.bool_], predicted: NDArray[np.float64]) -> float | None:
    """ROC AUC; None when the labels hold a single class."""
    if labels.size == 0 or labels.all() or not labels.any():
        return None
    return float(roc_auc_score(labels, predicted))


def brier(labels: NDArray[np.bool_], predicted: NDArray[np.float64]) -> float | None:
    """Mean squared difference between probability and outcome."""
    if labels.size == 0:
        return None
    return float(np.mean((predicted - labels) ** 2))


@dataclass(frozen=True, eq=False)
class Reliability:
    """Reliability-diagram data: equal-width probability bins of [0, 1]."""

    lower: NDArray[np.float64]
    upper: NDArray[np.float64]
    count: NDArray[np.int64]
    predicted_sum: NDArray[np.float64]
    observed_sum: NDArray[np.float64]

    @property
    def mean_predicted(self) -> NDArray[np.float64]:
        """Mean probability per bin (NaN for an empty bin)."""
        with np.errstate(invalid="ignore"):
            return self.predicted_sum / self.count

    @property
    def observed_rate(self) -> NDArray[np.float64]:
        """Share of positives per bin (NaN for an empty bin)."""
        with np.errstate(invalid="ignore"):
            return self.observed_sum / self.count

    def ece(self) -> float | None:
        """Expected calibration error: bin gaps weighted by bin counts."""
        total = int(self.count.sum())
        if total == 0:
            return None
        filled = self.count > 0
        gaps = np.abs(self.predicted_sum[filled] - self.observed_sum[filled])
        return float(gaps.sum() / total)

    def merged(self, other: Reliability) -> Reliability:
        """Both sets of observations in one diagram (same bins)."""
        return Reliability(
            self.lower,
            self.upper,
            self.count + other.count,
            self.predicted_sum + other.predicted_sum,
            self.observed_sum + other.observed_sum,
        )

    def to_json(self) -> dict[str, list[float | None] | list[int]]:
        """Plain lists, rounded, with null for empty bins."""

        def rounded(values: NDArray[np.float64]) -> list[float | None]:
            return [None if np.isnan(v) else round(float(v), 6) for v in values]

        return {
            "bin_lower": rounded(self.lower),
            "bin_upper": rounded(self.upper),
            "mean_predicted": rounded(self.mean_predicted),
            "observed_rate": rounded(self.observed_rate),
            "count": [int(c) for c in self.count],
        }


def reliability(
    labels: NDArray[np.bool_], predicted: NDArray[np.float64], bins: int = ECE_BINS
) -> Reliability:
    """Counts, summed probabilities and summed outcomes per equal-width bin."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip((np.clip(predicted, 0.0, 1.0) * bins).astype(np.int64), 0, bins - 1)
    return Reliability(
        lower=edges[:-1],
        upper=edges[1:],
        count=np.bincount(index, minlength=bins).astype(np.int64),
        predicted_sum=np.bincount(index, weights=predicted, minlength=bins).astype(np.float64),
        observed_sum=np.bincount(index, weights=labels, minlength=bins).astype(np.float64),
    )


def ece(
    labels: NDArray[np.bool_], predicted: NDArray[np.float64], bins: int = ECE_BINS
) -> float | None:
    """Expected calibration error over `bins` equal-width bins, weighted by bin counts."""
    return reliability(labels, predicted, bins).ece()


@dataclass(frozen=True)
class IntervalErrors:
    mae_days: float | None
    medae_days: float | None
    within_7d: float | None


def interval_errors(
    actual: NDArray[np.float64], predicted: NDArray[np.float64], within_days: float = WITHIN_DAYS
) -> IntervalErrors:
    """Absolute-error summaries over the pairs where both values are finite."""
    usable = np.isfinite(actual) & np.isfinite(predicted)
    if not usable.any():
        return IntervalErrors(None, None, None)
    errors = np.abs(predicted[usable] - actual[usable])
    return IntervalErrors(
        mae_days=float(errors.mean()),
        medae_days=float(np.median(errors)),
        within_7d=float(np.mean(errors <= within_days)),
    )
