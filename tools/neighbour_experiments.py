"""The neighbour experiments of docs/EVALUATION.md Notes, reproducible (about 5 minutes):

- Ta-Feng last basket: item-to-item co-purchase scores blended into `pantree`'s ranking at
  several weights (chosen on the test baskets: an upper bound, not a method);
- a TIFU-KNN-style shopper-neighbour model alone, and blended into `pantree`'s scores;
- Complete Journey: the co-purchase blend on a history-only validation month (cutoff day 168).

Usage: .venv/bin/python tools/neighbour_experiments.py
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray
from sklearn.preprocessing import normalize

from pantree_common.datasets.registry import load_dataset
from pantree_common.datasets.transactions import Transactions
from services.evaluation import metrics
from services.evaluation.harness import last_basket_split
from services.evaluation.methods import PairScores
from services.evaluation.pantree_method import PantreeMethod

HORIZON_DAYS = 28
NEW_PRODUCTS = 30
"""Co-purchase (or neighbour) candidates kept per shopper."""
CO_PURCHASE_WEIGHTS = (0.1, 0.2, 0.3, 0.5, 1.0, 2.0)
TIFU = ((300, 0.9), (300, 0.7), (100, 0.7))
"""(neighbours, own-vector weight) pairs tried."""
TIFU_DECAY = 0.9
TIFU_BLEND_WEIGHTS = (0.5, 1.0, 2.0, 4.0, 8.0)

Pairs = tuple[NDArray[np.int64], NDArray[np.float64]]
"""Keys (customer * n_items + item) and scores."""


def _customer_items(history: Transactions, n_customers: int, n_items: int) -> sp.csr_matrix:
    bought = sp.csr_matrix(
        (np.ones(history.customer.size), (history.customer, history.item)),
        shape=(n_customers, n_items),
    )
    bought.sum_duplicates()
    bought.data[:] = 1.0
    return bought


def _top(customers: NDArray[np.int64], scores: NDArray[np.float64], n_items: int) -> Pairs:
    top = np.argpartition(-scores, NEW_PRODUCTS, axis=1)[:, :NEW_PRODUCTS]
    keys = (customers[:, None] * n_items + top).ravel()
    return keys, np.take_along_axis(scores, top, 1).ravel()


def co_purchase(history: Transactions, customers: NDArray[np.int64], n_customers: int) -> Pairs:
    """Per shopper, the NEW_PRODUCTS products not yet bought with the highest mean over the
    shopper's products i of P(bought j | bought i) among the history's shoppers."""
    n_items = len(history.items)
    bought = _customer_items(history, n_customers, n_items)
    together = (bought.T @ bought).tocsr()
    together.setdiag(0)
    together.eliminate_zeros()
    given = sp.diags(1.0 / np.maximum(np.asarray(bought.sum(axis=0)).ravel(), 1)) @ together
    own = np.maximum(np.asarray(bought.sum(axis=1)).ravel(), 1)
    keys, scores = [], []
    for low in range(0, customers.size, 1000):
        chunk = customers[low : low + 1000]
        mean = (bought[chunk] @ given).toarray() / own[chunk, None]
        mean[bought[chunk].toarray() > 0] = 0
        k, s = _top(chunk, mean, n_items)
        keys.append(k)
        scores.append(s)
    return np.concatenate(keys), np.concatenate(scores)


def tifu(
    history: Transactions, customers: NDArray[np.int64], n_customers: int, k: int, alpha: float
) -> Pairs:
    """alpha x the shopper's basket vector (baskets decayed by TIFU_DECAY from the last) plus
    (1 - alpha) x the mean vector of the k most cosine-similar shoppers."""
    n_items = len(history.items)
    span = int(history.day.max() - history.day.min()) + 1
    basket_key = history.customer.astype(np.int64) * span + (history.day - history.day.min())
    baskets = np.unique(basket_key)
    basket_customer = baskets // span
    last = np.searchsorted(basket_customer, basket_customer, side="right") - 1
    from_end = (last - np.arange(baskets.size))[np.searchsorted(baskets, basket_key)]
    vectors = sp.csr_matrix(
        (TIFU_DECAY**from_end, (history.customer, history.item)), shape=(n_customers, n_items)
    )
    vectors.sum_duplicates()
    per_customer = np.maximum(np.bincount(basket_customer, minlength=n_customers), 1)
    vectors = sp.diags(1.0 / per_customer) @ vectors
    unit = normalize(vectors)
    keys, scores = [], []
    for low in range(0, customers.size, 1000):
        chunk = customers[low : low + 1000]
        similarity = (unit[chunk] @ unit.T).toarray()
        similarity[np.arange(chunk.size), chunk] = 0
        nearest = np.argpartition(-similarity, k, axis=1)[:, :k]
        neighbours = np.vstack([np.asarray(vectors[row].mean(axis=0)) for row in nearest])
        k_, s = _top(chunk, alpha * vectors[chunk].toarray() + (1 - alpha) * neighbours, n_items)
        keys.append(k_)
        scores.append(s)
    return np.concatenate(keys), np.concatenate(scores)


def blend(base: Pairs, extra: Pairs, weight: float) -> Pairs:
    """Every key of either, scored base + weight x extra (0 where a side lacks the key)."""
    keys = np.union1d(base[0], extra[0])
    total = np.zeros(keys.size)
    np.add.at(total, np.searchsorted(keys, base[0]), base[1])
    np.add.at(total, np.searchsorted(keys, extra[0]), weight * extra[1])
    return keys, total


def _pairs(scores: PairScores, n_items: int) -> Pairs:
    return scores.customer.astype(np.int64) * n_items + scores.item, scores.score


def _ranked(
    customers: NDArray[np.int32], truth_key: NDArray[np.int64], pairs: Pairs, n_items: int
) -> str:
    keys, scores = pairs
    found = metrics.ranking_metrics(
        customers,
        (truth_key // n_items).astype(np.int32),
        truth_key,
        (keys // n_items).astype(np.int32),
        keys,
        scores,
        10,
    )
    return f"Recall@10 {found.recall.mean():.4f}, NDCG@10 {found.ndcg.mean():.4f}"


def tafeng() -> None:
    transactions = load_dataset("tafeng")
    split = last_basket_split(transactions)
    n_items, n_customers = len(transactions.items), len(transactions.customer_ids)
    customers = split.customers.astype(np.int64)
    base = _pairs(PantreeMethod().score(split.history, split.cutoff_day, HORIZON_DAYS), n_items)

    def show(label: str, pairs: Pairs) -> None:
        found = _ranked(split.customers, split.truth_key, pairs, n_items)
        print(f"tafeng last basket, {label}: {found}")

    show("pantree", base)
    co = co_purchase(split.history, customers, n_customers)
    for weight in CO_PURCHASE_WEIGHTS:
        show(f"pantree + {weight} x co-purchase", _best_of(base, co, weight))
    for k, alpha in TIFU:
        neighbours = tifu(split.history, customers, n_customers, k, alpha)
        show(f"TIFU-style k={k} alpha={alpha}", neighbours)
        if (k, alpha) == (300, 0.7):
            for weight in TIFU_BLEND_WEIGHTS:
                show(
                    f"pantree + {weight} x TIFU-style k={k} alpha={alpha}",
                    blend(base, neighbours, weight),
                )


def _best_of(base: Pairs, extra: Pairs, weight: float) -> Pairs:
    """Every key of either with the higher of its base score and weight x its extra score."""
    keys = np.concatenate([base[0], extra[0]])
    scores = np.concatenate([base[1], weight * extra[1]])
    order = np.lexsort((-scores, keys))
    first = np.r_[True, keys[order][1:] != keys[order][:-1]]
    return keys[order][first], scores[order][first]


def completejourney() -> None:
    transactions = load_dataset("completejourney")
    day = int(transactions.day.min()) + 168
    n_items, n_customers = len(transactions.items), len(transactions.customer_ids)
    history = transactions.window(np.iinfo(np.int32).min, day)
    window = transactions.window(day, day + HORIZON_DAYS)
    customers = np.intersect1d(np.unique(window.customer), np.unique(history.customer))
    truth = np.unique(window.customer.astype(np.int64) * n_items + window.item)
    truth = truth[np.isin(truth // n_items, customers)]
    base = _pairs(PantreeMethod().score(history, day, HORIZON_DAYS), n_items)
    evaluated = customers.astype(np.int32)
    print(f"completejourney day 168, pantree: {_ranked(evaluated, truth, base, n_items)}")
    co = co_purchase(history, customers.astype(np.int64), n_customers)
    for weight in CO_PURCHASE_WEIGHTS[:5]:
        found = _ranked(evaluated, truth, _best_of(base, co, weight), n_items)
        print(f"completejourney day 168, pantree + {weight} x co-purchase: {found}")


if __name__ == "__main__":
    tafeng()
    completejourney()
