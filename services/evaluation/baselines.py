"""Baseline methods: what a learned model has to beat, each a vectorised `Method`.

Each method's Task A ranking; p_rebuy; interval_days (H = horizon, "-" = none):

- p_topfreq: personal purchase-day count, ties by recency; 1 - exp(-r * H); -.
- g_topfreq: global purchase-day count over the history, the same list for everyone (plus every
  history pair, for Task B); the rebuy share of the history's own last horizon (a constant);
  the global median gap between purchase days (a constant).
- gp_topfreq (extra, for last-basket data): p_topfreq, then g_topfreq's list; -; -.
- most_recent: last purchase day, ties by purchase-day count; -; -.
- median_gap: how due, days since last / median gap (single-day pairs after all others, the
  recent first); 1 - exp(-H / median gap); the median gap.
- seed_heuristic: the statistics-only confidence of services.frequency.statistics (minimum 3
  purchase days), ties by purchase-day count then recency; confidence / 100; median interval.

p_topfreq's rate r is the pair's purchase days per day from its first purchase to the cutoff
(the DESIGN's "purchase rate per day" baseline, AUC 0.703 on CJ at day 336); H is the horizon.
A NaN p_rebuy or interval means the method makes no prediction for that pair.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from pantree_common.datasets.transactions import Items, Transactions
from pantree_common.domain.history import History, Product
from services.evaluation.methods import Method, PairScores
from services.evaluation.protocol import (
    MIN_PURCHASE_DAYS_TASK_B,
    PairTable,
    pair_table,
    sorted_unique,
)
from services.frequency.statistics import analyze

SEED_MIN_PURCHASES = 3
"""The frequency step's default minimum purchase days (PANTREE_MIN_PURCHASES)."""
GLOBAL_LIST_LENGTH = 100
"""Globally popular items offered to every customer by g_topfreq and gp_topfreq."""


def _history_start(history: Transactions, cutoff_day: int) -> int:
    return int(history.day.min()) if history.event_count else cutoff_day


def _recency_fraction(
    pairs: PairTable, history: Transactions, cutoff_day: int
) -> NDArray[np.float64]:
    """In (0, 1): later last purchase -> larger; a tie-breaker below one purchase day."""
    start = _history_start(history, cutoff_day)
    return (pairs.last_day - start + 1) / (cutoff_day - start + 1.0)


def _popularity(pairs: PairTable, n_items: int) -> NDArray[np.float64]:
    """Purchase days of each item over all customers (customer-days buying it)."""
    return np.bincount(pairs.item, weights=pairs.purchase_days, minlength=n_items).astype(
        np.float64
    )


def _global_top(pairs: PairTable, n_items: int, length: int) -> NDArray[np.int64]:
    """The `length` most popular items, ties to the lower item index."""
    popularity = _popularity(pairs, n_items)
    order = np.lexsort((np.arange(n_items), -popularity))
    return order[: min(length, int(np.count_nonzero(popularity)))].astype(np.int64)


def _with_global_list(
    pairs: PairTable, n_items: int, top: NDArray[np.int64]
) -> tuple[NDArray[np.int64], NDArray[np.bool_]]:
    """Keys of every history pair plus every (customer with history, top item) pair, sorted,
    and whether each is a history pair."""
    customers = sorted_unique(pairs.customer.astype(np.int64))
    offered = (customers[:, None] * n_items + top[None, :]).ravel()
    keys = sorted_unique(np.concatenate((pairs.key, offered)))
    _, in_history = pairs.lookup(keys)
    return keys, in_history


class PTopFreq:
    """Personal top frequency: the items a customer bought on the most days."""

    name: str = "p_topfreq"

    def score(self, history: Transactions, cutoff_day: int, horizon_days: int) -> PairScores:
        pairs = pair_table(history)
        rate = pairs.purchase_days / (cutoff_day - pairs.first_day)
        return PairScores(
            customer=pairs.customer,
            item=pairs.item,
            score=pairs.purchase_days + _recency_fraction(pairs, history, cutoff_day),
            p_rebuy=-np.expm1(-rate * horizon_days),
        )


class GTopFreq:
    """Global top frequency: the same most popular items for everyone."""

    name: str = "g_topfreq"

    def __init__(self, list_length: int = GLOBAL_LIST_LENGTH) -> None:
        self.list_length = list_length

    def score(self, history: Transactions, cutoff_day: int, horizon_days: int) -> PairScores:
        n_items = len(history.items)
        pairs = pair_table(history)
        keys, _ = _with_global_list(pairs, n_items, _global_top(pairs, n_items, self.list_length))
        item = (keys % n_items).astype(np.int32)
        gaps = pairs.gaps_days
        interval = float(np.median(gaps)) if gaps.size else np.nan
        return PairScores(
            customer=(keys // n_items).astype(np.int32),
            item=item,
            score=_popularity(pairs, n_items)[item],
            p_rebuy=np.full(keys.size, _recent_rebuy_rate(history, cutoff_day, horizon_days)),
            interval_days=np.full(keys.size, interval),
        )


def _recent_rebuy_rate(history: Transactions, cutoff_day: int, horizon_days: int) -> float:
    """Share of Task-B-eligible pairs at cutoff - horizon (customers shopping in the last
    horizon, >= 3 purchase days before it) bought again in the history's last horizon."""
    start = _history_start(history, cutoff_day)
    before = pair_table(history.window(start, cutoff_day - horizon_days))
    recent = pair_table(history.window(cutoff_day - horizon_days, cutoff_day))
    shopped = np.zeros(len(history.customer_ids), dtype=np.bool_)
    shopped[recent.customer] = True
    active = shopped[before.customer]
    eligible = before.key[(before.purchase_days >= MIN_PURCHASE_DAYS_TASK_B) & active]
    if eligible.size == 0:
        return np.nan
    _, rebought = recent.lookup(eligible)
    return float(rebought.mean())


class GPTopFreq:
    """Personal top frequency, then the global list for the remaining places."""

    name: str = "gp_topfreq"

    def __init__(self, list_length: int = GLOBAL_LIST_LENGTH) -> None:
        self.list_length = list_length

    def score(self, history: Transactions, cutoff_day: int, horizon_days: int) -> PairScores:
        n_items = len(history.items)
        pairs = pair_table(history)
        keys, in_history = _with_global_list(
            pairs, n_items, _global_top(pairs, n_items, self.list_length)
        )
        item = (keys % n_items).astype(np.int32)
        popularity = _popularity(pairs, n_items)
        personal = pairs.purchase_days + _recency_fraction(pairs, history, cutoff_day)
        rows, _ = pairs.lookup(keys)
        # Personal scores are >= 1; fills are in (-1, 0) by popularity.
        fill = popularity[item] / (popularity.max(initial=0.0) + 1.0) - 1.0
        return PairScores(
            customer=(keys // n_items).astype(np.int32),
            item=item,
            score=np.where(in_history, personal[rows] if personal.size else 0.0, fill),
        )


class MostRecent:
    """The most recently bought items first."""

    name: str = "most_recent"

    def score(self, history: Transactions, cutoff_day: int, horizon_days: int) -> PairScores:
        pairs = pair_table(history)
        most_days = float(pairs.purchase_days.max(initial=0))
        return PairScores(
            customer=pairs.customer,
            item=pairs.item,
            score=(pairs.last_day - cutoff_day) + pairs.purchase_days / (most_days + 1.0),
        )


class MedianGap:
    """The most overdue items first, by their own median gap."""

    name: str = "median_gap"

    def score(self, history: Transactions, cutoff_day: int, horizon_days: int) -> PairScores:
        pairs = pair_table(history)
        gap = pairs.median_gap_days
        rhythmic = np.isfinite(gap)
        since = (cutoff_day - pairs.last_day).astype(np.float64)
        with np.errstate(invalid="ignore"):
            due = since / gap
            p_rebuy = -np.expm1(-horizon_days / gap)
        # Single-day pairs rank after every rhythmic one (scores > 0), the recent ones first.
        single = -(1.0 - _recency_fraction(pairs, history, cutoff_day))
        return PairScores(
            customer=pairs.customer,
            item=pairs.item,
            score=np.where(rhythmic, due, single),
            p_rebuy=p_rebuy,
            interval_days=gap,
        )


class SeedHeuristic:
    """The statistics-only confidence of the frequency step, as the seed design ranks."""

    name: str = "seed_heuristic"

    def __init__(self, min_purchases: int = SEED_MIN_PURCHASES) -> None:
        self.min_purchases = min_purchases
        self._catalog_of: Items | None = None
        self._catalog: list[Product] = []

    def _products(self, items: Items) -> list[Product]:
        """Every item as a Product, made once per catalog (the same for every cutoff)."""
        if self._catalog_of is not items:
            self._catalog = [items.product(i) for i in range(len(items))]
            self._catalog_of = items
        return self._catalog

    def _histories(
        self, history: Transactions, pairs: PairTable, customers: NDArray[np.int64]
    ) -> list[History]:
        """What Transactions.histories gives (items in ascending index), from shared Products."""
        catalog = self._products(history.items)
        offsets = history.customer_offsets()
        pair_offsets = np.searchsorted(pairs.customer, np.append(customers, customers[-1] + 1))
        histories = []
        for position, c in enumerate(customers.tolist()):
            rows = slice(offsets[c], offsets[c + 1])
            bought = pairs.item[pair_offsets[position] : pair_offsets[position + 1]]
            histories.append(
                History(
                    history.customer_ids[c],
                    tuple(catalog[i] for i in bought.tolist()),
                    np.searchsorted(bought, history.item[rows]).astype(np.int32),
                    history.day[rows],
                    history.quantity[rows],
                    history.price[rows],
                )
            )
        return histories

    def score(self, history: Transactions, cutoff_day: int, horizon_days: int) -> PairScores:
        pairs = pair_table(history)
        customers = sorted_unique(pairs.customer.astype(np.int64))
        if customers.size == 0:
            empty = np.empty(0)
            return PairScores(pairs.customer, pairs.item, empty, empty, empty)
        histories = self._histories(history, pairs, customers)
        table = analyze(histories, np.full(customers.size, cutoff_day), self.min_purchases)
        # A history lists its customer's items in ascending index, as the pair table does.
        first_row = np.searchsorted(pairs.customer, customers)
        row_customer = np.repeat(np.arange(customers.size), np.diff(table.customer_offsets))
        rows = first_row[row_customer] + table.product_index
        confidence = np.zeros(len(pairs))
        median = np.full(len(pairs), np.nan)
        confidence[rows] = table.confidence
        median[rows] = np.where(table.purchase_days >= 2, table.median_interval_days, np.nan)
        most_days = float(pairs.purchase_days.max(initial=0))
        # Below one confidence step (1e-4): more purchase days, then more recent, first.
        tie = (
            (pairs.purchase_days + _recency_fraction(pairs, history, cutoff_day))
            / (most_days + 2.0)
            * 1e-5
        )
        return PairScores(
            customer=pairs.customer,
            item=pairs.item,
            score=confidence + tie,
            p_rebuy=confidence / 100.0,
            interval_days=median,
        )


def baselines() -> list[Method]:
    """The five baselines every evaluation reports."""
    return [PTopFreq(), GTopFreq(), MostRecent(), MedianGap(), SeedHeuristic()]
