"""A synthetic shopper population with planted rhythms, for training tests."""

from __future__ import annotations

import numpy as np

from pantree_common.datasets.transactions import Items, Transactions
from services.recommendation.training import TrainingConfig

DAY0 = 19_000
DAYS = 252
CUTOFF = DAY0 + 224
PERIODS = (7, 10, 14)
FAST = TrainingConfig(max_iter=40, interval_max_iter=40, max_rows=20_000, min_samples_leaf=20)


def synthetic_items(count: int) -> Items:
    return Items(
        tuple(f"i{i:02d}" for i in range(count)),
        tuple(f"Item {i}" for i in range(count)),
        tuple(f"cat{i % 4}" for i in range(count)),
        tuple(f"dept{i % 2}" for i in range(count)),
        np.linspace(1.0, 9.0, count),
    )


def synthetic(
    n_customers: int = 250, n_items: int = 24, seed: int = 11
) -> tuple[Transactions, dict[tuple[int, int], int]]:
    """Shoppers with three rhythmic items each (period from PERIODS, +-1 day of jitter) and
    sporadic items bought at random with an item-specific daily rate; also the planted
    (customer, item) -> period map."""
    rng = np.random.default_rng(seed)
    rates = rng.uniform(0.002, 0.03, n_items)
    events: list[tuple[int, int, int]] = []
    planted: dict[tuple[int, int], int] = {}
    for customer in range(n_customers):
        rhythmic = rng.choice(n_items, size=3, replace=False)
        for item in rhythmic.tolist():
            period = int(rng.choice(PERIODS))
            planted[customer, item] = period
            day = int(rng.integers(0, period))
            while day < DAYS:
                events.append((customer, item, day))
                day += period + int(rng.integers(-1, 2))
        for item in np.setdiff1d(np.arange(n_items), rhythmic).tolist():
            days = np.flatnonzero(rng.random(DAYS) < rates[item])
            events.extend((customer, item, int(d)) for d in days)
    array = np.array(events, dtype=np.int64)
    transactions = Transactions.build(
        "synthetic",
        [f"c{c}" for c in range(n_customers)],
        synthetic_items(n_items),
        array[:, 0],
        array[:, 1],
        array[:, 2] + DAY0,
        np.ones(len(array)),
        np.full(len(array), 2.0),
    )
    return transactions, planted
