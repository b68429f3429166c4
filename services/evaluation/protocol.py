"""The time-split protocol: cutoffs, the history a method sees, and the truth it is judged on.

At a cutoff day T every method sees the history, the events on days before T, and is judged
on the test window [T, T + horizon). Rolling cutoffs fall every `step_days` (4 weeks) on a grid
anchored at the data's first day, over the second half of its span, and only where the whole
test window lies inside the data. For Complete Journey (2017-01-01 to 2017-12-31, 365 days)
that is offsets 196, 224, ..., 336: six cutoffs, the last of which is the reference "day 336".

Customers evaluated at a cutoff: those with at least one event in the history and at least one
in the test window (a customer who does not shop in the window has no truth to rank against).

- Task A truth: the distinct items each evaluated customer buys in the window. Repeat-only truth:
  the part of it the customer had already bought in the history.
- Task B pairs: (customer, item) pairs of evaluated customers with at least
  `min_purchase_days` distinct purchase days in the history. Label: bought again in the window.
  Actual interval of a rebought pair: its first window purchase day minus its last purchase day
  before T.

Pairs are keyed `customer * n_items + item` (int64) so that lookups are sorted-array searches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import numpy as np
from numpy.typing import NDArray

from pantree_common.datasets.transactions import Transactions

HORIZON_DAYS = 28
STEP_DAYS = 28
MIN_PURCHASE_DAYS_TASK_B = 3

_Integer = TypeVar("_Integer", bound=np.integer)


def first_day(transactions: Transactions) -> int:
    """The first event day of the data (epoch day)."""
    if transactions.event_count == 0:
        raise ValueError(f"{transactions.name}: no events")
    return int(transactions.day.min())


def end_day(transactions: Transactions) -> int:
    """The day after the last event day (epoch day, exclusive end)."""
    if transactions.event_count == 0:
        raise ValueError(f"{transactions.name}: no events")
    return int(transactions.day.max()) + 1


def rolling_cutoffs(
    transactions: Transactions, horizon_days: int = HORIZON_DAYS, step_days: int = STEP_DAYS
) -> list[int]:
    """Cutoff epoch days first_day + j * step_days (j >= 1) in the second half of the data's
    span whose test window [T, T + horizon_days) ends inside the data."""
    start, end = first_day(transactions), end_day(transactions)
    span = end - start
    cutoffs = [
        start + offset
        for offset in range(step_days, span, step_days)
        if 2 * offset >= span and start + offset + horizon_days <= end
    ]
    if not cutoffs:
        raise ValueError(
            f"{transactions.name}: {span} days are too few for a {horizon_days}-day window "
            "in the second half of the data"
        )
    return cutoffs


def cutoff_at(
    transactions: Transactions, offset_days: int, horizon_days: int = HORIZON_DAYS
) -> int:
    """The cutoff epoch day `offset_days` after the data's first day (CJ "day 336" is 336)."""
    start, end = first_day(transactions), end_day(transactions)
    if offset_days <= 0 or start + offset_days + horizon_days > end:
        raise ValueError(
            f"{transactions.name}: cutoff day {offset_days} needs 0 < day <= "
            f"{end - start - horizon_days} (history before it, a full {horizon_days}-day window "
            "after it)"
        )
    return start + offset_days


def sorted_unique(values: NDArray[_Integer]) -> NDArray[_Integer]:
    """The distinct values in ascending order (a sort and a mask: for int64 columns of a million
    rows many times faster than np.unique, which hashes)."""
    ordered = np.sort(values)
    if ordered.size < 2:
        return ordered
    return ordered[np.concatenate(([True], ordered[1:] != ordered[:-1]))]


def pair_keys(transactions: Transactions) -> NDArray[np.int64]:
    """The pair key of every event: customer * n_items + item."""
    return transactions.customer.astype(np.int64) * len(transactions.items) + transactions.item


@dataclass(frozen=True, eq=False)
class PairTable:
    """One row per (customer, item) pair with events, sorted by key."""

    key: NDArray[np.int64]
    customer: NDArray[np.int32]
    item: NDArray[np.int32]
    purchase_days: NDArray[np.int32]
    """Distinct days the pair was bought on."""
    first_day: NDArray[np.int32]
    last_day: NDArray[np.int32]
    median_gap_days: NDArray[np.float64]
    """Median of the gaps between consecutive purchase days; NaN with a single purchase day."""
    gaps_days: NDArray[np.int64]
    """Every gap between consecutive purchase days of a pair, all pairs together."""

    def __len__(self) -> int:
        return int(self.key.size)

    def lookup(self, keys: NDArray[np.int64]) -> tuple[NDArray[np.int64], NDArray[np.bool_]]:
        """Row of each key and whether the key is present (row is meaningless where absent)."""
        rows = np.searchsorted(self.key, keys)
        clipped = np.minimum(rows, max(self.key.size - 1, 0))
        found = (rows < self.key.size) & (self.key[clipped] == keys) if self.key.size else rows < 0
        return clipped.astype(np.int64), found


def pair_table(transactions: Transactions) -> PairTable:
    """Per-pair purchase-day counts, first and last day, and median gap, all vectorised."""
    if transactions.event_count == 0:
        empty_i = np.empty(0, np.int32)
        return PairTable(
            np.empty(0, np.int64),
            empty_i,
            empty_i,
            empty_i,
            empty_i,
            empty_i,
            np.empty(0),
            np.empty(0, np.int64),
        )
    low = int(transactions.day.min())
    day_span = int(transactions.day.max()) - low + 1
    keys = pair_keys(transactions)
    # One number per (pair, day), sorted by pair then day; same-day events merge.
    pair_day = sorted_unique(keys * day_span + (transactions.day - low))
    pair, day = pair_day // day_span, (pair_day % day_span + low).astype(np.int32)
    starts = np.flatnonzero(np.concatenate(([True], pair[1:] != pair[:-1])))
    ends = np.append(starts[1:], pair.size)
    key = pair[starts]
    counts = (ends - starts).astype(np.int32)

    same = pair[1:] == pair[:-1]
    gaps = np.diff(day)[same].astype(np.int64)
    gap_row = np.repeat(np.arange(key.size, dtype=np.int64), counts - 1)
    gap_offsets = np.concatenate(([0], np.cumsum(counts - 1)))
    bits = int(gaps.max(initial=0)).bit_length()
    ordered = np.sort((gap_row << bits) | gaps) & ((1 << bits) - 1)
    median = np.full(key.size, np.nan)
    rhythmic = counts >= 2
    base = gap_offsets[:-1][rhythmic]
    gap_count = counts[rhythmic] - 1
    median[rhythmic] = (ordered[base + (gap_count - 1) // 2] + ordered[base + gap_count // 2]) / 2

    n_items = len(transactions.items)
    return PairTable(
        key=key,
        customer=(key // n_items).astype(np.int32),
        item=(key % n_items).astype(np.int32),
        purchase_days=counts,
        first_day=day[starts],
        last_day=day[ends - 1],
        median_gap_days=median,
        gaps_days=gaps,
    )


@dataclass(frozen=True, eq=False)
class Split:
    """Everything the harness needs at one cutoff."""

    cutoff_day: int
    horizon_days: int
    history: Transactions
    """Events before the cutoff: what methods see."""
    history_pairs: PairTable
    customers: NDArray[np.int32]
    """Evaluated customers (history and at least one window purchase), ascending."""
    truth_key: NDArray[np.int64]
    """Distinct (customer, item) pairs bought in the window by evaluated customers, sorted."""
    truth_customer: NDArray[np.int32]
    truth_repeat: NDArray[np.bool_]
    """Whether the truth pair was already bought in the history (repeat-only truth)."""
    task_b_key: NDArray[np.int64]
    """Pairs of evaluated customers with >= min_purchase_days history purchase days, sorted."""
    task_b_rebought: NDArray[np.bool_]
    task_b_actual_interval: NDArray[np.float64]
    """First window purchase day minus last history purchase day; NaN if not rebought."""

    @property
    def repeat_customers(self) -> NDArray[np.int32]:
        """Evaluated customers with at least one repeat-only truth item."""
        return sorted_unique(self.truth_customer[self.truth_repeat])


def make_split(
    transactions: Transactions,
    cutoff_day: int,
    horizon_days: int = HORIZON_DAYS,
    min_purchase_days: int = MIN_PURCHASE_DAYS_TASK_B,
) -> Split:
    """The history, truth and Task-B pairs at one cutoff."""
    history = transactions.window(first_day(transactions), cutoff_day)
    test = transactions.window(cutoff_day, cutoff_day + horizon_days)
    history_pairs = pair_table(history)
    test_pairs = pair_table(test)

    n_customers = len(transactions.customer_ids)
    has_history = np.zeros(n_customers, dtype=np.bool_)
    has_history[history.customer] = True
    has_test = np.zeros(n_customers, dtype=np.bool_)
    has_test[test.customer] = True
    evaluated = has_history & has_test
    customers = np.flatnonzero(evaluated).astype(np.int32)

    in_truth = evaluated[test_pairs.customer]
    truth_key = test_pairs.key[in_truth]
    _, truth_repeat = history_pairs.lookup(truth_key)

    eligible = (history_pairs.purchase_days >= min_purchase_days) & evaluated[
        history_pairs.customer
    ]
    task_b_key = history_pairs.key[eligible]
    rows, rebought = test_pairs.lookup(task_b_key)
    actual = np.where(
        rebought,
        (test_pairs.first_day[rows] - history_pairs.last_day[eligible]).astype(np.float64),
        np.nan,
    )
    return Split(
        cutoff_day=cutoff_day,
        horizon_days=horizon_days,
        history=history,
        history_pairs=history_pairs,
        customers=customers,
        truth_key=truth_key,
        truth_customer=test_pairs.customer[in_truth],
        truth_repeat=truth_repeat,
        task_b_key=task_b_key,
        task_b_rebought=rebought,
        task_b_actual_interval=actual,
    )
