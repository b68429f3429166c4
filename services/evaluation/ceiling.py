"""How high the evaluation can go with what the model sees: a diagnostic, never a method.

At each cutoff T, every pair with history of the customers who shop in the window gets the
model's features on day T and the window's true labels, and a classifier of the model's own kind
is fitted and scored by two-fold cross-validation split by customer: the Task-B AUC on the pairs
with at least MIN_PURCHASE_DAYS_TASK_B purchase days (fitted on those), and the NDCG@10 of each
customer's own products ranked by the predictions against everything the customer bought in
the window (fitted on all pairs). It reads the test window on purpose: it knows the window's
base rate and how every feature relates to its labels, which no forecast can, so its figures
are upper bounds for a model built on these features rather than results. With `context`,
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
from services.evaluation import metrics
from services.evaluation.protocol import MIN_PURCHASE_DAYS_TASK_B
from services.recommendation.features import FEATURE_NAMES, feature_matrix
from services.recommendation.training import (
    Catalog,
    TrainingConfig,
    fit_priors,
    new_classifier,
    snapshot,
)

RANK_K = 10

ContextColumns = Callable[
    [Transactions, int, int, NDArray[np.int32], NDArray[np.int32]],
    dict[str, NDArray[np.float64]],
]
"""(transactions, day, horizon_days, customer, item) -> extra columns per row."""


@dataclass(frozen=True, eq=False)
class WindowRows:
    """Every pair with history of the customers who shop in the window, on the cutoff day:
    features, the window's labels, whose rows they are, and what those customers bought."""

    features: NDArray[np.float64]
    label: NDArray[np.bool_]
    customer: NDArray[np.int32]
    item: NDArray[np.int32]
    purchase_days: NDArray[np.int32]
    truth_key: NDArray[np.int64]
    """customer * n_items + item of every distinct window purchase of these customers."""
    n_items: int


def window_rows(transactions: Transactions, day: int, config: TrainingConfig) -> WindowRows:
    """Features on `day` (priors from the snapshot one horizon earlier, as in training) of the
    pairs of customers who shop in [day, day + horizon), labelled from that window."""
    horizon = config.horizon_days
    seen = transactions.window(np.iinfo(np.int32).min, day + horizon)
    catalog = Catalog(seen)
    snap = snapshot(seen, day, horizon, config.min_purchases, catalog)
    previous = snapshot(seen, day - horizon, horizon, config.min_purchases, catalog)
    priors = fit_priors([previous], [previous.active], catalog)
    rows = np.flatnonzero(snap.active)
    customer = snap.pairs.customer[rows]
    n_items = max(len(seen.items), 1)
    window = seen.window(day, day + horizon)
    truth = np.unique(window.customer.astype(np.int64) * n_items + window.item)
    return WindowRows(
        features=feature_matrix(snap.pairs.columns(catalog, catalog.codes(priors)), priors, rows),
        label=snap.label[rows],
        customer=customer,
        item=snap.pairs.item[rows],
        purchase_days=snap.pairs.table.purchase_days[rows],
        truth_key=truth[np.isin(truth // n_items, customer)],
        n_items=n_items,
    )


def out_of_fold(
    features: NDArray[np.float64],
    label: NDArray[np.bool_],
    customer: NDArray[np.int32],
    config: TrainingConfig,
) -> NDArray[np.float64] | None:
    """Predictions of two folds of customers, each from a model fitted on the other fold (None
    when a fold lacks either outcome)."""
    customers = np.unique(customer)
    rng = np.random.default_rng(config.seed)
    first_fold = np.isin(customer, rng.permutation(customers)[: customers.size // 2])
    predicted = np.empty(label.size)
    for fold in (first_fold, ~first_fold):
        if np.unique(label[~fold]).size < 2 or not fold.any():
            return None
        # A column without any value (scikit-learn cannot bin it) tells nothing anyway.
        known = ~np.isnan(features[~fold]).all(axis=0)
        model = new_classifier(config).fit(features[~fold][:, known], label[~fold])
        predicted[fold] = model.predict_proba(features[fold][:, known])[:, 1]
    return predicted


def ceilings(
    rows: WindowRows, features: NDArray[np.float64], config: TrainingConfig
) -> tuple[float | None, float | None]:
    """(Task-B AUC, NDCG@10 of the customers' own products) of out-of-fold predictions: the AUC
    on the pairs with MIN_PURCHASE_DAYS_TASK_B purchase days, the NDCG over all their pairs
    against everything they bought in the window (new products count as misses)."""
    task_b = rows.purchase_days >= MIN_PURCHASE_DAYS_TASK_B
    auc = None
    predicted = out_of_fold(features[task_b], rows.label[task_b], rows.customer[task_b], config)
    if predicted is not None:
        auc = float(roc_auc_score(rows.label[task_b], predicted))
    ndcg = None
    predicted = out_of_fold(features, rows.label, rows.customer, config)
    if predicted is not None:
        customers = np.unique(rows.customer)
        ranking = metrics.ranking_metrics(
            customers,
            (rows.truth_key // rows.n_items).astype(np.int32),
            rows.truth_key,
            rows.customer,
            rows.customer.astype(np.int64) * rows.n_items + rows.item,
            predicted,
            RANK_K,
        )
        ndcg = float(ranking.ndcg.mean())
    return auc, ndcg


def feature_ceiling(
    transactions: Transactions,
    cutoffs: Sequence[int],
    config: TrainingConfig | None = None,
    context: ContextColumns | None = None,
) -> dict[str, Any]:
    """The in-window ceilings at each cutoff (and with the context columns), with their means:

    {"dataset", "horizon_days", "features", "context",
     "cutoffs": [{"cutoff_epoch_day", "cutoff_date", "customers", "task_b_pairs",
                  "task_b_positive_share", "auc_features", "ndcg@10_features",
                  "auc_with_context", "ndcg@10_with_context"}], "mean": {...}}
    """
    config = config or TrainingConfig()
    per_cutoff: list[dict[str, Any]] = []
    context_names: list[str] = []
    for day in cutoffs:
        rows = window_rows(transactions, day, config)
        task_b_label = rows.label[rows.purchase_days >= MIN_PURCHASE_DAYS_TASK_B]
        entry: dict[str, Any] = {
            "cutoff_epoch_day": day,
            "cutoff_date": from_epoch_day(day).isoformat(),
            "customers": int(np.unique(rows.customer).size),
            "task_b_pairs": int(task_b_label.size),
            "task_b_positive_share": _rounded(
                float(task_b_label.mean()) if task_b_label.size else None
            ),
        }
        variants = {"features": rows.features}
        if context is not None:
            extra = context(transactions, day, config.horizon_days, rows.customer, rows.item)
            context_names = sorted(extra)
            variants["with_context"] = np.column_stack(
                [rows.features, *(extra[name] for name in context_names)]
            )
        for variant, features in variants.items():
            auc, ndcg = ceilings(rows, features, config)
            entry[f"auc_{variant}"] = _rounded(auc)
            entry[f"ndcg@{RANK_K}_{variant}"] = _rounded(ndcg)
        per_cutoff.append(entry)
    keys = [key for key in per_cutoff[0] if key.startswith(("auc_", "ndcg@"))] if per_cutoff else []
    return {
        "dataset": transactions.name,
        "horizon_days": config.horizon_days,
        "features": list(FEATURE_NAMES),
        "context": context_names,
        "cutoffs": per_cutoff,
        "mean": {key: _mean([entry[key] for entry in per_cutoff]) for key in keys},
    }


def _mean(values: Sequence[float | None]) -> float | None:
    """Mean of the cutoffs that have the figure (None when none has)."""
    known = [value for value in values if value is not None]
    return _rounded(float(np.mean(known)) if known else None)


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
