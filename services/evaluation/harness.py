"""Runs methods through the protocol and reduces their scores to the evaluation JSON.

`evaluate` returns exactly

    {"dataset": name, "protocol": {...}, "n_customers": N,
     "methods": {name: {metric: {"mean": m, "sd": s}, ...}, ...}}

with the metrics of METRIC_NAMES in that order, mean and sample standard deviation across the
cutoffs (sd 0 for a single cutoff), rounded to 6 decimals; a metric the method cannot produce
(no p_rebuy, no interval, AUC with one class) is null; a cutoff where a metric is undefined
is left out of that metric's mean and sd. N counts the distinct customers evaluated
at any cutoff. The result is a pure function of the input: same data, same JSON.

How methods' scores are read:
- Task A ranks each customer's scored pairs by score (ties: lower item index first); pairs a
  method does not score are never recommended. Metrics are averaged over the evaluated customers
  (repeat-only metrics over those with at least one repeat-only truth item).
- Task B reads p_rebuy and interval_days of the Task-B pairs (protocol.py). A pair the method
  does not score, or scores with a NaN probability, counts as p_rebuy 0; interval errors are
  taken over the rebought pairs that have a finite predicted interval.

`evaluate_last_basket` is the next-basket protocol of the literature (e.g. Ta-Feng): each
customer's last basket (last purchase day) is the truth and everything before it the history.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from pantree_common.datasets.transactions import Transactions
from pantree_common.domain.dates import from_epoch_day
from services.evaluation import metrics
from services.evaluation.methods import Method, PairScores
from services.evaluation.protocol import (
    HORIZON_DAYS,
    MIN_PURCHASE_DAYS_TASK_B,
    Split,
    first_day,
    make_split,
    pair_keys,
    sorted_unique,
)

log = logging.getLogger(__name__)

KS = (10, 20)
DECIMALS = 6
TASK_A_NAMES = ("recall", "ndcg", "phr", "rep_recall", "rep_ndcg")
TASK_B_NAMES = (
    "auc",
    "brier",
    "ece",
    "interval_mae_days",
    "interval_medae_days",
    "within_7d",
)
METRIC_NAMES = (
    *(f"{name}@{k}" for k in KS for name in TASK_A_NAMES),
    *TASK_B_NAMES,
)
LAST_BASKET_K = 10
LAST_BASKET_NAMES = ("recall", "ndcg", "ndcg_uncapped", "phr")


@dataclass
class EvaluationRun:
    """The JSON result plus what the report needs beside it."""

    result: dict[str, Any]
    reliability: dict[str, dict[str, Any] | None]
    """Per method: reliability-diagram bins over the Task-B pairs of all cutoffs pooled
    (Reliability.to_json()), None for a method without p_rebuy."""
    seconds: dict[str, float] = field(default_factory=dict)
    """Wall time per method (scoring + metrics, all cutoffs) and for the splits ("splits")."""


def _round(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return round(float(value), DECIMALS)


def _summary(values: Sequence[float | None]) -> dict[str, float | None]:
    present = [v for v in values if v is not None and math.isfinite(v)]
    if not present:
        return {"mean": None, "sd": None}
    mean = float(np.mean(present))
    sd = float(np.std(present, ddof=1)) if len(present) > 1 else 0.0
    return {"mean": _round(mean), "sd": _round(sd)}


def _checked_keys(scores: PairScores, transactions: Transactions, name: str) -> NDArray[np.int64]:
    """The pair keys of the scores, after checking shapes, ranges and uniqueness."""
    size = scores.customer.size
    columns: dict[str, NDArray[np.generic]] = {"item": scores.item, "score": scores.score}
    if scores.p_rebuy is not None:
        columns["p_rebuy"] = scores.p_rebuy
    if scores.interval_days is not None:
        columns["interval_days"] = scores.interval_days
    for column, values in columns.items():
        if values.shape != (size,):
            raise ValueError(f"{name}: {column} has shape {values.shape}, customer has {size}")
    n_customers, n_items = len(transactions.customer_ids), len(transactions.items)
    if size and (
        scores.customer.min() < 0
        or scores.customer.max() >= n_customers
        or scores.item.min() < 0
        or scores.item.max() >= n_items
    ):
        raise ValueError(f"{name}: customer or item index out of range")
    if not np.isfinite(scores.score).all():
        raise ValueError(f"{name}: scores must be finite")
    keys = scores.customer.astype(np.int64) * n_items + scores.item
    ordered = np.sort(keys)
    if ordered.size > 1 and (ordered[1:] == ordered[:-1]).any():
        raise ValueError(f"{name}: a (customer, item) pair is scored twice")
    return keys


def _lookup(
    keys: NDArray[np.int64], wanted: NDArray[np.int64]
) -> tuple[NDArray[np.int64], NDArray[np.bool_]]:
    """Index into `keys` (unsorted, unique) of each wanted key, and whether it is there."""
    order = np.argsort(keys, kind="stable")
    ordered = keys[order]
    position = np.minimum(np.searchsorted(ordered, wanted), max(ordered.size - 1, 0))
    if ordered.size == 0:
        return np.zeros(wanted.size, np.int64), np.zeros(wanted.size, np.bool_)
    return order[position].astype(np.int64), ordered[position] == wanted


def _ranking(
    customers: NDArray[np.int32],
    truth_customer: NDArray[np.int32],
    truth_key: NDArray[np.int64],
    scores: PairScores,
    keys: NDArray[np.int64],
    k: int,
) -> metrics.RankingMetrics:
    """A method's top-k judged against one truth set."""
    return metrics.ranking_metrics(
        customers, truth_customer, truth_key, scores.customer, keys, scores.score, k
    )


def _task_a(split: Split, scores: PairScores, keys: NDArray[np.int64]) -> dict[str, float | None]:
    values: dict[str, float | None] = {}
    repeat_customers = split.repeat_customers
    for k in KS:
        full = _ranking(split.customers, split.truth_customer, split.truth_key, scores, keys, k)
        repeat = _ranking(
            repeat_customers,
            split.truth_customer[split.truth_repeat],
            split.truth_key[split.truth_repeat],
            scores,
            keys,
            k,
        )
        has_repeat = repeat_customers.size > 0
        values[f"recall@{k}"] = float(full.recall.mean()) if split.customers.size else None
        values[f"ndcg@{k}"] = float(full.ndcg.mean()) if split.customers.size else None
        values[f"phr@{k}"] = float(full.phr.mean()) if split.customers.size else None
        values[f"rep_recall@{k}"] = float(repeat.recall.mean()) if has_repeat else None
        values[f"rep_ndcg@{k}"] = float(repeat.ndcg.mean()) if has_repeat else None
    return values


def _task_b(
    split: Split, scores: PairScores, keys: NDArray[np.int64]
) -> tuple[dict[str, float | None], metrics.Reliability | None]:
    values: dict[str, float | None] = dict.fromkeys(TASK_B_NAMES)
    rows, found = _lookup(keys, split.task_b_key)
    labels = split.task_b_rebought
    calibration = None
    if scores.p_rebuy is not None and labels.size:
        p = np.where(found, scores.p_rebuy[rows] if keys.size else 0.0, 0.0)
        p = np.where(np.isfinite(p), p, 0.0)
        calibration = metrics.reliability(labels, p)
        values["auc"] = metrics.auc(labels, p)
        values["brier"] = metrics.brier(labels, p)
        values["ece"] = calibration.ece()
    if scores.interval_days is not None and labels.any():
        predicted = np.where(found, scores.interval_days[rows] if keys.size else np.nan, np.nan)
        errors = metrics.interval_errors(split.task_b_actual_interval[labels], predicted[labels])
        values["interval_mae_days"] = errors.mae_days
        values["interval_medae_days"] = errors.medae_days
        values["within_7d"] = errors.within_7d
    return values, calibration


def _protocol(
    transactions: Transactions,
    cutoffs: Sequence[int],
    horizon_days: int,
    min_purchase_days: int,
    splits: Sequence[Split],
) -> dict[str, Any]:
    start = first_day(transactions)
    return {
        "split": "time",
        "cutoffs": [from_epoch_day(c).isoformat() for c in cutoffs],
        "cutoff_offsets_days": [int(c - start) for c in cutoffs],
        "first_day": from_epoch_day(start).isoformat(),
        "last_day": from_epoch_day(int(transactions.day.max())).isoformat(),
        "horizon_days": horizon_days,
        "k": list(KS),
        "min_purchase_days_task_b": min_purchase_days,
        "ece_bins": metrics.ECE_BINS,
        "within_days": metrics.WITHIN_DAYS,
        "customers_per_cutoff": [int(s.customers.size) for s in splits],
        "task_b_pairs_per_cutoff": [int(s.task_b_key.size) for s in splits],
        "history": "all events on days before the cutoff",
        "test": "events on days in [cutoff, cutoff + horizon_days)",
        "customers": "customers with history and at least one purchase in the test window",
        "repeat_only": "test-window items the customer had bought before the cutoff; averaged "
        "over customers with at least one",
        "task_b_pairs": "pairs of evaluated customers with at least min_purchase_days_task_b "
        "distinct purchase days before the cutoff; label: bought in the test window",
        "aggregate": "per customer (Task A) or per pair (Task B) within a cutoff, then mean and "
        "sample sd across cutoffs (sd 0 for one cutoff)",
    }


def run_evaluation(
    transactions: Transactions,
    methods: Sequence[Method],
    cutoffs: Sequence[int],
    horizon_days: int = HORIZON_DAYS,
    min_purchase_days: int = MIN_PURCHASE_DAYS_TASK_B,
) -> EvaluationRun:
    """Evaluate every method at every cutoff (epoch days; see protocol.rolling_cutoffs)."""
    if not cutoffs:
        raise ValueError("need at least one cutoff")
    names = [m.name for m in methods]
    if len(set(names)) != len(names):
        raise ValueError(f"method names must be unique, got {names}")
    seconds: dict[str, float] = dict.fromkeys(["splits", *names], 0.0)
    per_cutoff: dict[str, list[dict[str, float | None]]] = {name: [] for name in names}
    calibration: dict[str, metrics.Reliability | None] = dict.fromkeys(names)
    splits: list[Split] = []
    evaluated: set[int] = set()
    for cutoff in cutoffs:
        started = time.perf_counter()
        split = make_split(transactions, cutoff, horizon_days, min_purchase_days)
        seconds["splits"] += time.perf_counter() - started
        splits.append(split)
        evaluated.update(split.customers.tolist())
        for method in methods:
            started = time.perf_counter()
            scores = method.score(split.history, cutoff, horizon_days)
            keys = _checked_keys(scores, transactions, method.name)
            values = _task_a(split, scores, keys)
            task_b, bins = _task_b(split, scores, keys)
            values.update(task_b)
            per_cutoff[method.name].append(values)
            if bins is not None:
                previous = calibration[method.name]
                calibration[method.name] = bins if previous is None else previous.merged(bins)
            seconds[method.name] += time.perf_counter() - started
        log.info(
            "evaluated cutoff %s: %d customers, %d Task-B pairs",
            from_epoch_day(cutoff).isoformat(),
            split.customers.size,
            split.task_b_key.size,
        )
    result: dict[str, Any] = {
        "dataset": transactions.name,
        "protocol": _protocol(transactions, cutoffs, horizon_days, min_purchase_days, splits),
        "n_customers": len(evaluated),
        "methods": {
            name: {
                metric: _summary([values[metric] for values in per_cutoff[name]])
                for metric in METRIC_NAMES
            }
            for name in names
        },
    }
    return EvaluationRun(
        result=result,
        reliability={
            name: None if bins is None else bins.to_json() for name, bins in calibration.items()
        },
        seconds=seconds,
    )


def evaluate(
    transactions: Transactions,
    methods: Sequence[Method],
    cutoffs: Sequence[int],
    horizon_days: int = HORIZON_DAYS,
    min_purchase_days: int = MIN_PURCHASE_DAYS_TASK_B,
) -> dict[str, Any]:
    """The evaluation JSON (see the module docstring)."""
    return run_evaluation(transactions, methods, cutoffs, horizon_days, min_purchase_days).result


@dataclass(frozen=True, eq=False)
class LastBasketSplit:
    """Every customer's history aligned to end at one common cutoff, and their last baskets."""

    history: Transactions
    cutoff_day: int
    customers: NDArray[np.int32]
    truth_key: NDArray[np.int64]
    truth_customer: NDArray[np.int32]


def last_basket_split(transactions: Transactions, min_baskets: int = 2) -> LastBasketSplit:
    """Each customer with at least `min_baskets` purchase days: the last one is the truth.

    The Method protocol has one cutoff for everyone, so each customer's days are shifted by a
    constant to make their last basket fall on a common cutoff day: recency and gaps stay
    exact per customer, and global statistics (popularity) see every customer's history, as the
    literature's leave-last-basket-out protocol does.
    """
    if min_baskets < 2:
        raise ValueError(
            f"min_baskets must be at least 2 (history + last basket), got {min_baskets}"
        )
    customer, day = transactions.customer, transactions.day
    n_customers = len(transactions.customer_ids)
    last = np.full(n_customers, np.iinfo(np.int32).min, dtype=np.int64)
    np.maximum.at(last, customer, day)
    basket_days = sorted_unique(customer.astype(np.int64) * (1 << 32) + day) >> 32
    baskets = np.bincount(basket_days, minlength=n_customers)
    keep = baskets[customer] >= min_baskets
    cutoff = int(last.max(initial=0))
    shifted = day + (cutoff - last[customer])
    is_truth = keep & (shifted == cutoff)
    is_history = keep & (shifted < cutoff)
    history = Transactions(
        transactions.name,
        transactions.customer_ids,
        transactions.items,
        customer[is_history],
        transactions.item[is_history],
        shifted[is_history].astype(np.int32),
        transactions.quantity[is_history],
        transactions.price[is_history],
    )
    truth_key = sorted_unique(pair_keys(transactions)[is_truth])
    n_items = len(transactions.items)
    return LastBasketSplit(
        history=history,
        cutoff_day=cutoff,
        customers=np.flatnonzero(baskets >= min_baskets).astype(np.int32),
        truth_key=truth_key,
        truth_customer=(truth_key // n_items).astype(np.int32),
    )


def evaluate_last_basket(
    transactions: Transactions,
    methods: Sequence[Method],
    k: int = LAST_BASKET_K,
    min_baskets: int = 2,
    horizon_days: int = HORIZON_DAYS,
) -> dict[str, Any]:
    """Recall, NDCG (capped and the literature's uncapped) and PHR at k on the last basket:

    {"dataset", "protocol", "n_customers",
     "methods": {name: {"recall@k", "ndcg@k", "ndcg_uncapped@k", "phr@k"}}} (plain numbers).
    """
    split = last_basket_split(transactions, min_baskets)
    results: dict[str, dict[str, float | None]] = {}
    for method in methods:
        scores = method.score(split.history, split.cutoff_day, horizon_days)
        keys = _checked_keys(scores, transactions, method.name)
        ranking = _ranking(split.customers, split.truth_customer, split.truth_key, scores, keys, k)
        results[method.name] = {
            f"{name}@{k}": _round(float(getattr(ranking, name).mean()))
            if split.customers.size
            else None
            for name in LAST_BASKET_NAMES
        }
    return {
        "dataset": transactions.name,
        "protocol": {
            "split": "last_basket",
            "k": k,
            "min_baskets": min_baskets,
            "truth": "the items of each customer's last purchase day",
            "history": "the customer's earlier purchase days; each customer's days are shifted "
            "so that every last basket falls on one common cutoff (global statistics see all "
            "customers' histories, as in the leave-last-basket-out literature)",
            "ndcg": "ndcg@k: IDCG over min(k, |truth|) items; ndcg_uncapped@k: over |truth|",
        },
        "n_customers": int(split.customers.size),
        "methods": results,
    }
