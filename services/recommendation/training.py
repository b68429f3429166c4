"""Training of the subscription model from many customers' transactions (an offline job).

Like the batch job, training composes the cores in-process: it runs the frequency statistics
(`services.frequency.statistics.analyze`) on past snapshots of the data and learns from what
happened next. Nothing here runs in the recommendation service.

Snapshots. With the cutoff T (the model may see events strictly before T) and the horizon H:

    snapshot k (k = 1 .. 1 + train_snapshots) is taken on day S_k = T - k H: features from the
    events before S_k, labels from [S_k, S_k + H) (bought again within the horizon?) and, for the
    interval, the days from S_k to the next purchase before T.

Snapshots k >= 2 train the two models; snapshot 1, the month just before T, is split by customer
into a calibration half (isotonic calibration, choice of the ranking blend) and a validation
half (the metrics in the model card). No event on or after T is read, so an evaluation cutoff T
never sees its own test window. A snapshot needs `min_history_days` of data before it.

Every (customer, product) pair with at least one purchase before the snapshot is a row, cold
pairs (1-2 purchase days) included. Negatives are subsampled to at most `max_rows` training rows;
the calibration on the untouched snapshot 1 undoes the shift that sampling causes.

The interval model (model 2) is fitted on the pairs of the training snapshots that were
rebought within the horizon: the days from the snapshot to that purchase, always observed (see
services.recommendation.model).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.isotonic import IsotonicRegression

from pantree_common.datasets.transactions import Transactions
from pantree_common.domain.history import History, Product
from services.evaluation import metrics as evaluation_metrics
from services.frequency.statistics import ItemStatsTable, analyze
from services.recommendation import model as model_module
from services.recommendation.features import (
    COLD_START_PURCHASE_DAYS,
    FEATURE_NAMES,
    PRIOR_FEATURES,
    Priors,
    columns_from_table,
    feature_matrix,
)
from services.recommendation.model import ModelInfo, Predictions, SubscriptionModel

ECE_BINS = 10
RANK_K = 10


@dataclass(frozen=True)
class TrainingConfig:
    """Hyper-parameters of `fit`; the defaults train on Complete Journey in ~10-20 s on 2 cores."""

    horizon_days: int = model_module.HORIZON_DAYS
    train_snapshots: int = 3
    """Snapshots (before the calibration snapshot) whose rows train the models."""
    min_history_days: int = 28
    """A snapshot needs this many days of data before it."""
    max_rows: int = 150_000
    """Training rows per model after subsampling (all positives kept when they fit)."""
    max_iter: int = 120
    learning_rate: float = 0.1
    max_leaf_nodes: int = 31
    min_samples_leaf: int = 100
    l2_regularization: float = 1.0
    interval_rows: int = 60_000
    interval_max_iter: int = 80
    active_customers_only: bool = True
    """Learn and calibrate on customers who shop within the snapshot's horizon: the probability
    is then P(rebuy | the customer shops in the next horizon), the population the evaluation
    protocol scores (and the one a subscription serves)."""
    min_purchases: int = COLD_START_PURCHASE_DAYS
    """Passed to the statistics; no feature depends on it."""
    frequency_weights: tuple[float, ...] = (0.0, 0.05, 0.1, 0.2, 0.4)
    """Candidate weights of the trip share in the ranking score, chosen on the calibration half."""
    seed: int = 0


@dataclass(frozen=True, eq=False)
class PairTable:
    """Statistics of every (customer, item) pair of a data set on one day, with the global
    customer and item index of each row."""

    day: int
    table: ItemStatsTable
    customer: NDArray[np.int32]
    item: NDArray[np.int32]

    def columns(
        self, catalog: Catalog, codes: tuple[NDArray[np.int64], ...]
    ) -> dict[str, NDArray[Any]]:
        """Feature columns, with item-level prior codes (Catalog.codes) taken per row."""
        product, category, department = (code[self.item] for code in codes)
        customers = self.table.customer_offsets.size - 1
        return columns_from_table(
            self.table,
            np.full(customers, self.day),
            product,
            category,
            department,
            catalog.prices[self.item],
        )


@dataclass(frozen=True, eq=False)
class Snapshot:
    """A PairTable with what happened after its day."""

    pairs: PairTable
    label: NDArray[np.bool_]
    """Bought within [day, day + horizon)."""
    remaining_days: NDArray[np.float64]
    """Days from the snapshot day to the next purchase before the data end; inf if none."""
    active: NDArray[np.bool_]
    """The row's customer buys anything within [day, day + horizon)."""
    first_in_window: NDArray[np.float64]
    """Day of the first purchase in [day, day + horizon) (NaN when none)."""


class Catalog:
    """A data set's items as arrays, and their Product objects, built once per data set."""

    def __init__(self, transactions: Transactions) -> None:
        items = transactions.items
        self.items = items
        self.products: list[Product | None] = [None] * len(items)
        self.ids = np.asarray(items.item_ids, dtype=np.str_)
        self.categories = np.asarray(items.categories, dtype=np.str_)
        self.departments = np.asarray(items.departments, dtype=np.str_)
        self.prices = np.asarray(items.unit_price_usd, dtype=np.float64)

    def product(self, index: int) -> Product:
        product = self.products[index]
        if product is None:
            product = self.products[index] = self.items.product(index)
        return product

    def codes(self, priors: Priors) -> tuple[NDArray[np.int64], ...]:
        """Prior codes (product, category, department) of every item."""
        return priors.encode(self.ids, self.categories, self.departments)


def data_sha256(transactions: Transactions) -> str:
    """SHA-256 of the data set's name and event columns (customer, item, day, quantity, price),
    little-endian: what the model card calls the training data."""
    digest = hashlib.sha256(transactions.name.encode())
    for column in (
        transactions.customer,
        transactions.item,
        transactions.day,
        transactions.quantity,
        transactions.price,
    ):
        digest.update(np.ascontiguousarray(column, dtype=column.dtype.newbyteorder("<")).data)
    return digest.hexdigest()


def pair_table(
    transactions: Transactions, day: int, min_purchases: int, catalog: Catalog
) -> PairTable:
    """Statistics on `day` of every pair with events before `day`."""
    past = transactions.window(np.iinfo(np.int32).min, day)
    n_items = max(len(past.items), 1)
    offsets = past.customer_offsets()
    customers = np.flatnonzero(np.diff(offsets))
    pair_keys, event_pair = np.unique(
        past.customer.astype(np.int64) * n_items + past.item, return_inverse=True
    )
    pair_item = (pair_keys % n_items).astype(np.int32)
    pair_base = np.searchsorted(pair_keys // n_items, np.arange(len(past.customer_ids) + 1))
    local = (event_pair.reshape(-1) - pair_base[past.customer]).astype(np.int32)
    histories: list[History] = []
    for c in customers.tolist():
        rows = slice(offsets[c], offsets[c + 1])
        products = tuple(catalog.product(i) for i in pair_item[pair_base[c] : pair_base[c + 1]])
        # Events are sorted by (customer, day, item), so each customer's are in day order.
        histories.append(
            History(
                past.customer_ids[c],
                products,
                local[rows],
                past.day[rows],
                past.quantity[rows],
                past.price[rows],
            )
        )
    table = analyze(histories, np.full(len(histories), day, dtype=np.int32), min_purchases)
    row_local_customer = np.repeat(np.arange(customers.size), np.diff(table.customer_offsets))
    row_customer = customers[row_local_customer]
    row_item = pair_item[pair_base[row_customer] + table.product_index]
    return PairTable(day, table, row_customer.astype(np.int32), row_item.astype(np.int32))


def snapshot(
    transactions: Transactions,
    day: int,
    horizon_days: int,
    min_purchases: int,
    catalog: Catalog,
) -> Snapshot:
    """A PairTable on `day` labelled from the events on and after it (up to the data end)."""
    pairs = pair_table(transactions, day, min_purchases, catalog)
    n_items = max(len(transactions.items), 1)
    end = int(transactions.day.max(initial=day)) + 1
    future = transactions.window(day, end)
    keys = future.customer.astype(np.int64) * n_items + future.item
    # Events are in day order within a customer, so a key's first occurrence is its first day.
    future_keys, first = np.unique(keys, return_index=True)
    row_keys = pairs.customer.astype(np.int64) * n_items + pairs.item
    remaining = np.full(row_keys.size, np.inf)
    if future_keys.size:
        position = np.clip(np.searchsorted(future_keys, row_keys), 0, future_keys.size - 1)
        seen = future_keys[position] == row_keys
        remaining[seen] = future.day[first[position[seen]]] - day
    label = remaining < horizon_days
    shoppers = np.zeros(len(transactions.customer_ids), dtype=np.bool_)
    shoppers[future.customer[future.day < day + horizon_days]] = True
    return Snapshot(
        pairs=pairs,
        label=label,
        remaining_days=remaining,
        active=shoppers[pairs.customer],
        first_in_window=np.where(label, day + remaining, np.nan),
    )


def _subsample(
    label: NDArray[np.bool_], max_rows: int, rng: np.random.Generator
) -> NDArray[np.int64]:
    """Rows to train on: every positive (or max_rows / 2 of them), negatives to fill max_rows."""
    positives, negatives = np.flatnonzero(label), np.flatnonzero(~label)
    keep_positive = min(positives.size, max(max_rows // 2, max_rows - negatives.size))
    keep_negative = min(negatives.size, max_rows - keep_positive)
    chosen = np.concatenate(
        [
            rng.choice(positives, keep_positive, replace=False),
            rng.choice(negatives, keep_negative, replace=False),
        ]
    )
    return np.sort(chosen)


def _tree_settings(config: TrainingConfig) -> dict[str, Any]:
    """What both boosted models share: tree shape, regularisation, no early stopping, seed."""
    return {
        "learning_rate": config.learning_rate,
        "max_leaf_nodes": config.max_leaf_nodes,
        "min_samples_leaf": config.min_samples_leaf,
        "l2_regularization": config.l2_regularization,
        "early_stopping": False,
        "random_state": config.seed,
    }


def new_classifier(config: TrainingConfig) -> HistGradientBoostingClassifier:
    return HistGradientBoostingClassifier(max_iter=config.max_iter, **_tree_settings(config))


def _regressor(config: TrainingConfig) -> HistGradientBoostingRegressor:
    return HistGradientBoostingRegressor(
        loss="quantile",
        quantile=0.5,
        max_iter=config.interval_max_iter,
        **_tree_settings(config),
    )


# --- metrics (validation slice, with the evaluation harness' own metric functions) -------------


def _number(value: float | None) -> float:
    return float("nan") if value is None else value


def repeat_ranking(
    customer: NDArray[np.int32], score: NDArray[np.float64], label: NDArray[np.bool_]
) -> tuple[float, float]:
    """Mean recall@RANK_K and NDCG@RANK_K over the customers with a labelled row (NaN when
    none), the labelled rows being the truth."""
    key = np.arange(customer.size, dtype=np.int64)
    with_truth = np.unique(customer[label])
    if not with_truth.size:
        return float("nan"), float("nan")
    ranking = evaluation_metrics.ranking_metrics(
        with_truth, customer[label], key[label], customer, key, score, RANK_K
    )
    return float(ranking.recall.mean()), float(ranking.ndcg.mean())


def validation_metrics(
    snap: Snapshot, rows: NDArray[np.int64], predictions: Predictions
) -> dict[str, float]:
    """The evaluation protocol's figures on some rows of a snapshot: ranking over repeat items;
    AUC, Brier, ECE and interval errors on pairs with >= 3 purchase days."""
    label = snap.label[rows]
    recall, ndcg = repeat_ranking(
        snap.pairs.customer[rows].astype(np.int32), predictions.score, label
    )
    rhythmic = snap.pairs.table.purchase_days[rows] >= 3
    p, y = predictions.p_rebuy[rhythmic], label[rhythmic]
    rebought = rhythmic & label
    actual = (
        snap.first_in_window[rows][rebought]
        - snap.pairs.table.last_purchase_epoch_day[rows][rebought]
    ).astype(np.float64)
    intervals = evaluation_metrics.interval_errors(actual, predictions.interval_days[rebought])
    metrics = {
        f"rep_recall@{RANK_K}": recall,
        f"rep_ndcg@{RANK_K}": ndcg,
        "auc": _number(evaluation_metrics.auc(y, p)),
        "brier": _number(evaluation_metrics.brier(y, p)),
        "ece": _number(evaluation_metrics.ece(y, p)),
        "interval_mae_days": _number(intervals.mae_days),
        "within_7d": _number(intervals.within_7d),
        "rows": float(rows.size),
    }
    return {name: round(value, 6) for name, value in metrics.items()}


# --- fitting ----------------------------------------------------------------------------------


def snapshot_days(transactions: Transactions, cutoff_day: int, config: TrainingConfig) -> list[int]:
    """S_1 (calibration) first, then the training snapshots, newest first; those with too
    little data before them are dropped."""
    if not transactions.event_count:
        return []
    start = int(transactions.day.min())
    days = [cutoff_day - k * config.horizon_days for k in range(1, config.train_snapshots + 2)]
    return [day for day in days if day - start >= config.min_history_days]


def fit_priors(
    snaps: Sequence[Snapshot], rows: Sequence[NDArray[np.bool_]], catalog: Catalog
) -> Priors:
    """Priors from the chosen rows of the snapshots; gaps from the newest snapshot's pairs."""
    items = np.concatenate([s.pairs.item[r] for s, r in zip(snaps, rows, strict=True)])
    labels = np.concatenate([s.label[r] for s, r in zip(snaps, rows, strict=True)])
    latest, latest_rows = snaps[0].pairs, rows[0]
    gaps = np.diff(latest.table.interval_offsets)
    interval_item = np.repeat(latest.item, gaps)
    interval_kept = np.repeat(latest_rows, gaps)
    return Priors.fit(
        catalog.ids,
        catalog.categories,
        catalog.departments,
        items,
        labels,
        interval_item[interval_kept],
        latest.table.intervals_days[interval_kept],
    )


def _training_matrices(
    snaps: Sequence[Snapshot],
    rows: Sequence[NDArray[np.int64]],
    population: Sequence[NDArray[np.bool_]],
    catalog: Catalog,
    priors: Priors,
    rng: np.random.Generator,
) -> list[NDArray[np.float64]]:
    """Feature matrices of the given rows of the training snapshots, with out-of-fold priors:
    the customers are split in two, and each half's prior features come from priors fitted on
    the other half's population rows, so no row's own label leaks into its product rate."""
    customers = np.unique(np.concatenate([s.pairs.customer for s in snaps]))
    half = np.zeros(int(customers.max(initial=0)) + 1, dtype=np.bool_)
    half[rng.permutation(customers)[: customers.size // 2]] = True
    codes = catalog.codes(priors)
    matrices = [
        feature_matrix(s.pairs.columns(catalog, codes), priors, r)
        for s, r in zip(snaps, rows, strict=True)
    ]
    prior_columns = [FEATURE_NAMES.index(name) for name in PRIOR_FEATURES]
    for fold in (False, True):
        other = [
            p & (half[s.pairs.customer] != fold) for s, p in zip(snaps, population, strict=True)
        ]
        fold_priors = fit_priors(snaps, other, catalog)
        fold_codes = catalog.codes(fold_priors)
        for snap, snap_rows, matrix in zip(snaps, rows, matrices, strict=True):
            in_fold = np.flatnonzero(half[snap.pairs.customer[snap_rows]] == fold)
            item = snap.pairs.item[snap_rows[in_fold]]
            values = fold_priors.features(*(code[item] for code in fold_codes))
            for column, name in zip(prior_columns, PRIOR_FEATURES, strict=True):
                matrix[in_fold, column] = values[name]
    return matrices


def _split_rows(chosen: NDArray[np.int64], sizes: Sequence[int]) -> list[NDArray[np.int64]]:
    """Indexes into the concatenation of arrays of the given sizes, split back per array."""
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    return [
        chosen[(chosen >= low) & (chosen < high)] - low for low, high in pairwise(bounds.tolist())
    ]


def fit(
    transactions: Transactions, cutoff_day: int, config: TrainingConfig | None = None
) -> SubscriptionModel:
    """Train on the events strictly before cutoff_day; raises ValueError when there is too
    little data for a calibration snapshot and one training snapshot."""
    config = config or TrainingConfig()
    started = time.perf_counter()
    history = transactions.window(np.iinfo(np.int32).min, cutoff_day)
    days = snapshot_days(history, cutoff_day, config)
    if len(days) < 2:
        raise ValueError(
            f"too little data to train before epoch day {cutoff_day}: need "
            f"{config.min_history_days} days of history before epoch day "
            f"{cutoff_day - 2 * config.horizon_days}"
        )
    catalog = Catalog(history)
    snaps = [
        snapshot(history, day, config.horizon_days, config.min_purchases, catalog) for day in days
    ]
    return fit_snapshots(history, cutoff_day, snaps, catalog, config, started)


def fit_snapshots(
    history: Transactions,
    cutoff_day: int,
    snaps: Sequence[Snapshot],
    catalog: Catalog,
    config: TrainingConfig,
    started: float | None = None,
) -> SubscriptionModel:
    """`fit` on snapshots already taken (the calibration snapshot first)."""
    started = time.perf_counter() if started is None else started
    days = [s.pairs.day for s in snaps]
    calibration_snap, train_snaps = snaps[0], snaps[1:]
    population = [
        s.active if config.active_customers_only else np.ones(s.label.size, np.bool_) for s in snaps
    ]
    rng = np.random.default_rng(config.seed)
    priors = fit_priors(train_snaps, population[1:], catalog)

    # Model 1 rows: the population's rows with negatives subsampled. Model 2 rows: pairs
    # rebought within the horizon, whose time to that purchase is fully observed.
    sizes = [s.label.size for s in train_snaps]
    label = np.concatenate([s.label for s in train_snaps])
    in_population = np.concatenate(population[1:])
    candidates = np.flatnonzero(in_population)
    classifier_rows = candidates[_subsample(label[candidates], config.max_rows, rng)]
    rebought = np.flatnonzero(label)
    interval_rows = np.sort(
        rng.choice(rebought, min(rebought.size, config.interval_rows), replace=False)
    )
    needed = np.union1d(classifier_rows, interval_rows)
    matrices = _training_matrices(
        train_snaps, _split_rows(needed, sizes), population[1:], catalog, priors, rng
    )
    needed_x = np.concatenate(matrices)
    classifier_x = needed_x[np.searchsorted(needed, classifier_rows)]
    classifier = new_classifier(config).fit(classifier_x, label[classifier_rows])
    remaining = np.concatenate([s.remaining_days for s in train_snaps])[interval_rows]
    interval_x = needed_x[np.searchsorted(needed, interval_rows)]
    regressor = _regressor(config).fit(interval_x, remaining)

    # Snapshot 1: calibrate and choose the blend on half of the customers, validate on the rest.
    calibration_rows = np.flatnonzero(population[0])
    calibration_x = feature_matrix(
        calibration_snap.pairs.columns(catalog, catalog.codes(priors)), priors, calibration_rows
    )
    calibration_customer = calibration_snap.pairs.customer[calibration_rows]
    customers = np.unique(calibration_customer)
    is_validation = np.isin(calibration_customer, rng.permutation(customers)[: customers.size // 2])
    raw = np.asarray(classifier.predict_proba(calibration_x)[:, 1], dtype=np.float64)
    calibration_label = calibration_snap.label[calibration_rows]
    isotonic = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(
        raw[~is_validation], calibration_label[~is_validation]
    )
    calibration = centered_isotonic(
        np.asarray(isotonic.X_thresholds_, dtype=np.float64),
        np.asarray(isotonic.y_thresholds_, dtype=np.float64),
    )
    p_rebuy = np.clip(np.interp(raw, *calibration), 0.0, 1.0)
    trip_share = calibration_x[:, FEATURE_NAMES.index("trip_share")]
    base_score = p_rebuy + model_module.TIE_BREAK * raw
    weight = _choose_weight(
        calibration_customer[~is_validation],
        base_score[~is_validation],
        trip_share[~is_validation],
        calibration_label[~is_validation],
        config.frequency_weights,
    )
    model = SubscriptionModel(
        classifier=classifier,
        calibration_x=calibration[0],
        calibration_y=calibration[1],
        interval_regressor=regressor,
        priors=priors,
        info=ModelInfo(history.name, cutoff_day, "", history.event_count),
        horizon_days=config.horizon_days,
        frequency_weight=weight,
    )
    validation_rows = calibration_rows[is_validation]
    metrics = validation_metrics(
        calibration_snap,
        validation_rows,
        _validation_predictions(
            model, calibration_x[is_validation], p_rebuy[is_validation], raw[is_validation]
        ),
    )
    info = ModelInfo(
        dataset=history.name,
        training_cutoff_epoch_day=cutoff_day,
        data_sha256=data_sha256(history),
        data_events=history.event_count,
        metrics=metrics,
        training={
            "config": {
                key: list(value) if isinstance(value, tuple) else value
                for key, value in asdict(config).items()
            },
            "snapshot_epoch_days": days,
            "calibration_snapshot_epoch_day": days[0],
            "classifier_rows": int(classifier_rows.size),
            "interval_rows": int(interval_rows.size),
            "calibration_rows": int(np.count_nonzero(~is_validation)),
            "validation_rows": int(validation_rows.size),
            "seconds": round(time.perf_counter() - started, 2),
        },
    )
    return SubscriptionModel(**{**_fields(model), "info": info})


def centered_isotonic(
    x: NDArray[np.float64], y: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Isotonic thresholds turned into a strictly increasing map: each flat block of the step
    function becomes one point at its block's centre, linearly interpolated in between
    (centred isotonic regression). Calibration stays as close, but probabilities no longer tie
    across a whole block, so they still rank the pairs inside it."""
    if y.size < 2:
        return x, y
    block = np.concatenate([[0], np.cumsum(y[1:] != y[:-1])])
    count = np.bincount(block)
    centre = np.bincount(block, weights=x) / count
    value = y[np.concatenate([[0], np.cumsum(count)[:-1]])]
    return centre, value


def _validation_predictions(
    model: SubscriptionModel,
    matrix: NDArray[np.float64],
    p_rebuy: NDArray[np.float64],
    raw: NDArray[np.float64],
) -> Predictions:
    """model.predict_matrix(matrix) given its calibrated p_rebuy, with intervals predicted only
    where the validation metrics read them (pairs with >= 3 purchase days)."""
    purchase_days = matrix[:, FEATURE_NAMES.index("purchase_days")]
    interval = np.full(p_rebuy.size, np.nan)
    rhythmic = purchase_days >= 3
    if rhythmic.any():
        interval[rhythmic] = model.predict_matrix(matrix[rhythmic]).interval_days
    trip_share = matrix[:, FEATURE_NAMES.index("trip_share")]
    return Predictions(
        p_rebuy=p_rebuy,
        confidence=100.0 * p_rebuy,
        interval_days=interval,
        score=p_rebuy + model.frequency_weight * trip_share + model_module.TIE_BREAK * raw,
        cold_start=purchase_days < COLD_START_PURCHASE_DAYS,
    )


def _fields(model: SubscriptionModel) -> dict[str, Any]:
    return {name: getattr(model, name) for name in model.__dataclass_fields__}


def _choose_weight(
    customer: NDArray[np.int32],
    base_score: NDArray[np.float64],
    trip_share: NDArray[np.float64],
    label: NDArray[np.bool_],
    weights: Sequence[float],
) -> float:
    """The trip-share weight with the best rep NDCG@10 (the first of equals)."""
    best, best_ndcg = 0.0, -1.0
    for weight in weights:
        _, ndcg = repeat_ranking(customer, base_score + weight * trip_share, label)
        if ndcg > best_ndcg + 1e-9:
            best, best_ndcg = weight, ndcg
    return best


def predict_pairs(
    model: SubscriptionModel, transactions: Transactions, day: int
) -> tuple[PairTable, Predictions]:
    """Predictions on `day` for every pair with events before it."""
    catalog = Catalog(transactions)
    pairs = pair_table(transactions, day, COLD_START_PURCHASE_DAYS, catalog)
    return pairs, model.predict(pairs.columns(catalog, catalog.codes(model.priors)))


def train_and_save(
    transactions: Transactions,
    output: Path | str,
    cutoff_day: int | None = None,
    config: TrainingConfig | None = None,
) -> Path:
    """Train on everything before cutoff_day (default: the whole data set) and write the
    artifact into `output`; returns the directory."""
    if cutoff_day is None:
        cutoff_day = int(transactions.day.max()) + 1
    return model_module.save(fit(transactions, cutoff_day, config), output)
