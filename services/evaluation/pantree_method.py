"""Pantree's learned model as an evaluated method.

At each cutoff the method trains on the history it is given (snapshots strictly before the
cutoff, services.recommendation.training) and predicts at the cutoff for every pair with a
purchase in the history:

    score          the ranking score the model chose on its own calibration slice (calibrated
                   p_rebuy, plus a small weight on the pair's trip share where that ranked better
                   inside the history)
    p_rebuy        the calibrated P(rebuy within the horizon)
    interval_days  the predicted days from the last purchase to the next one, given that it
                   falls within the horizon

Discovery. The subscription model only knows a shopper's own products. For Task A (which items
will the shopper buy) the method may also offer every shopper the products that shoppers most
often bought for the first time in the last horizon, each scored with that measured first-purchase
rate, so it only outranks an own product that is less likely; those pairs carry no interval.
Whether to (none, or DISCOVERY_ITEMS products) is decided inside the history: at the day one
horizon before the cutoff, on a sample of shoppers, by NDCG@10 over everything they bought in
the following horizon (the model's calibration month, so no test event is read).

The test window is never read: the harness hands the method only events before the cutoff.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from numpy.typing import NDArray

from pantree_common.datasets.transactions import Transactions
from services.evaluation import metrics
from services.evaluation.methods import PairScores
from services.recommendation.model import SubscriptionModel
from services.recommendation.training import TrainingConfig, fit, predict_pairs

DISCOVERY_ITEMS = 50
"""Products offered to every shopper when discovery is on."""
DISCOVERY_PRIOR_CUSTOMERS = 20.0
"""Pseudo-customers (who did not buy) added to every product's first-purchase rate."""
VALIDATION_CUSTOMERS = 800
"""Shoppers sampled to decide on discovery."""
RANK_K = 10


def discovery_rates(
    history: Transactions, cutoff_day: int, horizon_days: int
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Items by falling first-purchase rate in [cutoff - horizon, cutoff), and those rates: the
    share of that window's shoppers who bought the item for the first time, among the shoppers
    who had not bought it before (plus DISCOVERY_PRIOR_CUSTOMERS who did not)."""
    start = cutoff_day - horizon_days
    n_items = len(history.items)
    before = history.window(np.iinfo(np.int32).min, start)
    window = history.window(start, cutoff_day)
    shoppers = np.unique(window.customer)
    had = np.unique(before.customer.astype(np.int64) * n_items + before.item)
    bought = np.unique(window.customer.astype(np.int64) * n_items + window.item)
    first_time = bought[~np.isin(bought, had)]
    adopters = np.bincount(first_time % n_items, minlength=n_items).astype(np.float64)
    had_shopper = had[np.isin(had // n_items, shoppers)]
    owners = np.bincount(had_shopper % n_items, minlength=n_items)
    rate = adopters / (shoppers.size - owners + DISCOVERY_PRIOR_CUSTOMERS)
    order = np.lexsort((np.arange(n_items), -rate))
    return order.astype(np.int64), rate[order]


def _customers(transactions: Transactions, customers: NDArray[np.int64]) -> Transactions:
    """The events of the given customers only (indexes unchanged)."""
    return transactions.events(np.isin(transactions.customer, customers))


class PantreeMethod:
    """Trains the subscription model on each history and scores its pairs at the cutoff."""

    name: str = "pantree"

    def __init__(
        self,
        config: TrainingConfig | None = None,
        discovery_choices: tuple[int, ...] = (0, DISCOVERY_ITEMS),
        seed: int = 0,
    ) -> None:
        self.config = config or TrainingConfig()
        self.discovery_choices = discovery_choices
        self.seed = seed
        self.last_discovery = 0
        """The number of discovery products chosen at the last cutoff."""

    def score(self, history: Transactions, cutoff_day: int, horizon_days: int) -> PairScores:
        config = self.config
        if horizon_days != config.horizon_days:
            config = dataclasses.replace(config, horizon_days=horizon_days)
        model = fit(history, cutoff_day, config)
        self.last_discovery = self._choose_discovery(model, history, cutoff_day, horizon_days)
        return self._scores(model, history, cutoff_day, horizon_days, self.last_discovery)

    def _scores(
        self,
        model: SubscriptionModel,
        history: Transactions,
        day: int,
        horizon_days: int,
        discovery: int,
    ) -> PairScores:
        pairs, predictions = predict_pairs(model, history, day)
        customer = pairs.customer.astype(np.int64)
        item = pairs.item.astype(np.int64)
        score, p_rebuy = predictions.score, predictions.p_rebuy
        interval = predictions.interval_days
        if discovery:
            items, rates = discovery_rates(history, day, horizon_days)
            items, rates = items[:discovery], rates[:discovery]
            customers = np.unique(customer)
            n_items = len(history.items)
            keys = (customers[:, None] * n_items + items[None, :]).ravel()
            new = ~np.isin(keys, customer * n_items + item)
            rate = np.tile(rates, customers.size)[new]
            customer = np.concatenate([customer, keys[new] // n_items])
            item = np.concatenate([item, keys[new] % n_items])
            score = np.concatenate([score, rate])
            p_rebuy = np.concatenate([p_rebuy, rate])
            interval = np.concatenate([interval, np.full(rate.size, np.nan)])
        return PairScores(
            customer=customer.astype(np.int32),
            item=item.astype(np.int32),
            score=score.astype(np.float64),
            p_rebuy=p_rebuy.astype(np.float64),
            interval_days=interval.astype(np.float64),
        )

    def _choose_discovery(
        self, model: SubscriptionModel, history: Transactions, cutoff_day: int, horizon_days: int
    ) -> int:
        """The discovery choice with the best NDCG@10 one horizon before the cutoff (the first
        choice on ties or without enough history)."""
        choices = self.discovery_choices
        day = cutoff_day - horizon_days
        if len(choices) < 2 or not history.event_count or day - horizon_days < history.day.min():
            return choices[0]
        window = history.window(day, cutoff_day)
        earlier = history.window(np.iinfo(np.int32).min, day)
        candidates = np.intersect1d(np.unique(window.customer), np.unique(earlier.customer))
        if not candidates.size:
            return choices[0]
        rng = np.random.default_rng(self.seed)
        sample = np.sort(rng.permutation(candidates)[:VALIDATION_CUSTOMERS]).astype(np.int64)
        n_items = len(history.items)
        shopped = _customers(window, sample)
        truth_key = np.unique(shopped.customer.astype(np.int64) * n_items + shopped.item)
        truth_customer = (truth_key // n_items).astype(np.int32)
        past = _customers(earlier, sample)
        best, best_ndcg = choices[0], -1.0
        for choice in choices:
            scores = self._scores(model, past, day, horizon_days, choice)
            keys = scores.customer.astype(np.int64) * n_items + scores.item
            ndcg = float(
                metrics.ranking_metrics(
                    sample.astype(np.int32),
                    truth_customer,
                    truth_key,
                    scores.customer,
                    keys,
                    scores.score,
                    RANK_K,
                ).ndcg.mean()
            )
            if ndcg > best_ndcg + 1e-9:
                best, best_ndcg = choice, ndcg
        return best
