"""How high the Task-B AUC can go with what the model sees: a diagnostic, never a method.

At each cutoff T, the Task-B population (evaluated customers' pairs with at least
MIN_PURCHASE_DAYS_TASK_B purchase days before T) gets the model's features on day T and the
window's true labels, and a classifier of the model's own kind is fitted and scored by two-fold
cross-validation split by customer. It therefore reads the test window on purpose: it knows the
window's base rate and how every feature relates to its labels, which no forecast can, so its
AUC is an upper bound for a model built on these features rather than a result. With `context`,
columns the purchases do not carry (demographics, promotions) are added to the same rows, to
measure what they would add at most.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.metrics import roc_auc_score

from pantree_common.datasets.transactions import Transactions
from pantree_common.domain.dates import from_epoch_day
from services.evaluation.protocol import MIN_PURCHASE_DAYS_TASK_B
from services.recommendation.features import FEATURE_NAMES, feature_matrix
from services.recommendation.training import (
    Catalog,
    TrainingConfig,
    fit_priors,
    new_classifier,
    snapshot,
)

ContextColumns = Callable[
    [Transactions, int, int, NDArray[np.int32], NDArray[np.int32]],
    dict[str, NDArray[np.float64]],
]
"""(transactions, day, horizon_days, customer, item) -> extra columns per row."""


@dataclass(frozen=True, eq=False)
class WindowRows:
    """The Task-B rows on one day: features, the window's labels, and whose rows they are."""

    features: NDArray[np.float64]
    label: NDArray[np.bool_]
    customer: NDArray[np.int32]
    item: NDArray[np.int32]


def window_rows(transactions: Transactions, day: int, config: TrainingConfig) -> WindowRows:
    """Features on `day` (priors from the snapshot one horizon earlier, as in training) of the
    Task-B pairs of customers who shop in [day, day + horizon), labelled from that window."""
    horizon = config.horizon_days
    seen = transactions.window(np.iinfo(np.int32).min, day + horizon)
    catalog = Catalog(seen)
    snap = snapshot(seen, day, horizon, config.min_purchases, catalog)
    previous = snapshot(seen, day - horizon, horizon, config.min_purchases, catalog)
    priors = fit_priors([previous], [previous.active], catalog)
    purchase_days = snap.pairs.table.purchase_days
    rows = np.flatnonzero(snap.active & (purchase_days >= MIN_PURCHASE_DAYS_TASK_B))
    features = feature_matrix(snap.pairs.columns(catalog, catalog.codes(priors)), priors, rows)
    return WindowRows(features, snap.label[rows], snap.pairs.customer[rows], snap.pairs.item[rows])


def cross_validated_auc(
    features: NDArray[np.float64],
    label: NDArray[np.bool_],
    customer: NDArray[np.int32],
    config: TrainingConfig,
) -> float:
    """ROC AUC of out-of-fold predictions, two folds of customers (NaN with one class only)."""
    if np.unique(label).size < 2:
        return float("nan")
    customers = np.unique(customer)
    rng = np.random.default_rng(config.seed)
    first_fold = np.isin(customer, rng.permutation(customers)[: customers.size // 2])
    predicted = np.empty(label.size)
    for fold in (first_fold, ~first_fold):
        model = new_classifier(config).fit(features[~fold], label[~fold])
        predicted[fold] = model.predict_proba(features[fold])[:, 1]
    return float(roc_auc_score(label, predicted))


def feature_ceiling(
    transactions: Transactions,
    cutoffs: Sequence[int],
    config: TrainingConfig | None = None,
    context: ContextColumns | None = None,
) -> dict[str, Any]:
    """The in-window AUC at each cutoff (and with the context columns), with their means:

    {"dataset", "horizon_days", "features", "context",
     "cutoffs": [{"cutoff_epoch_day", "cutoff_date", "pairs", "positive_share",
                  "auc_features", "auc_with_context"}], "mean": {...}}
    """
    config = config or TrainingConfig()
    per_cutoff: list[dict[str, Any]] = []
    context_names: list[str] = []
    for day in cutoffs:
        rows = window_rows(transactions, day, config)
        entry: dict[str, Any] = {
            "cutoff_epoch_day": day,
            "cutoff_date": from_epoch_day(day).isoformat(),
            "pairs": int(rows.label.size),
            "positive_share": round(float(rows.label.mean()), 4) if rows.label.size else None,
            "auc_features": _round(
                cross_validated_auc(rows.features, rows.label, rows.customer, config)
            ),
        }
        if context is not None:
            extra = context(transactions, day, config.horizon_days, rows.customer, rows.item)
            context_names = sorted(extra)
            widened = np.column_stack([rows.features, *(extra[name] for name in context_names)])
            entry["auc_with_context"] = _round(
                cross_validated_auc(widened, rows.label, rows.customer, config)
            )
        per_cutoff.append(entry)
    keys = ["auc_features", *(["auc_with_context"] if context is not None else [])]
    return {
        "dataset": transactions.name,
        "horizon_days": config.horizon_days,
        "features": list(FEATURE_NAMES),
        "context": context_names,
        "cutoffs": per_cutoff,
        "mean": {key: _mean([entry[key] for entry in per_cutoff]) for key in keys},
    }


def _mean(values: Sequence[float | None]) -> float | None:
    """Mean of the cutoffs that have an AUC (None when none has)."""
    known = [value for value in values if value is not None]
    return round(float(np.mean(known)), 4) if known else None


def _round(value: float) -> float | None:
    return None if np.isnan(value) else round(value, 4)
