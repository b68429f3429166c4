"""The terms of a Subscribe & Save offer, computed on arrays: one implementation for the
Recommend RPC (a handful of offers per call, scoring.rank) and the batch job (millions,
services.recommendation.batch), so their answers cannot drift apart.

Every function takes numpy arrays (one value per offer or per candidate) and returns arrays;
those written with plain operators also take Python scalars. Money is rounded to cents by
`cents` alone, so both paths round half-cent cases alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple, TypeVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

from pantree_common.domain import catalog
from services.recommendation.features import COLD_START_PURCHASE_DAYS

RECENCY_SHARE = 0.2
"""Part of the heuristic score taken from recency_weight; the rest is confidence / 100.
Confidence says whether there is a rhythm, recency whether the shopper still keeps it: of two
equally regular products, the overdue one (perhaps dropped) ranks lower."""
DAYS_PER_MONTH = 30
DAYS_PER_YEAR = 365
Number = TypeVar("Number", float, NDArray[np.float64])


class Savings(NamedTuple):
    """Money saved by subscriptions, in US dollars rounded to cents (arrays, one per offer)."""

    per_delivery: NDArray[np.float64]
    monthly: NDArray[np.float64]
    yearly: NDArray[np.float64]


@dataclass(frozen=True, eq=False)
class OfferTerms:
    """What a shopper is offered, one value per offer."""

    delivery_interval_days: NDArray[np.int64]
    """The predicted interval snapped to the store's delivery grid."""
    interval_snap_error_days: NDArray[np.float64]
    """Delivery interval minus predicted interval: > 0 delivers later than the rhythm."""
    quantity_per_delivery: NDArray[np.float64]
    savings: Savings
    first_delivery_epoch_day: NDArray[np.int64]
    cold_start: NDArray[np.bool_]


def heuristic_score(confidence: Number, recency_weight: Number) -> Number:
    """Ranking score in [0, 1] when no model is loaded: (1 - RECENCY_SHARE) * confidence / 100
    + RECENCY_SHARE * recency_weight. Plain operators: a float in gives the same float out."""
    return (1 - RECENCY_SHARE) * confidence / 100 + RECENCY_SHARE * recency_weight


def expected_purchase_day(
    last_purchase_epoch_day: ArrayLike, interval_days: ArrayLike
) -> NDArray[np.int64]:
    """The day a model expects the next purchase: the last one plus the predicted interval
    rounded to whole days (half to even)."""
    return np.asarray(last_purchase_epoch_day, dtype=np.int64) + np.rint(interval_days).astype(
        np.int64
    )


def store_offers(
    product_id: str, category: str, excluded: frozenset[str], never: frozenset[str]
) -> bool:
    """Whether the store offers this product on a schedule at all: not excluded, in a category
    the active catalog delivers (fresh bread is not) and not one the store never subscribes
    (`never` is case-folded)."""
    return (
        product_id not in excluded
        and catalog.active_catalog().subscribable(category)
        and category.casefold() not in never
    )


def eligible(
    meets_minimum_purchases: ArrayLike,
    offered: ArrayLike,
    confidence: ArrayLike,
    min_confidence: float,
) -> NDArray[np.bool_]:
    """A rhythm worth promising: enough purchase days, a product the store offers (`offered`,
    from store_offers) and a confidence of at least min_confidence (NaN never is)."""
    return (
        np.asarray(meets_minimum_purchases, dtype=np.bool_)
        & np.asarray(offered, dtype=np.bool_)
        & (np.asarray(confidence, dtype=np.float64) >= min_confidence)
    )


def snap_to_grid(days: ArrayLike, grid: Sequence[int]) -> NDArray[np.int64]:
    """The grid interval nearest to each of `days`; on a tie the shorter, so the pantry never
    runs out. `grid` is ascending."""
    options = np.asarray(grid, dtype=np.int64)
    wanted = np.asarray(days, dtype=np.float64)
    if options.size == 1:
        return np.full(wanted.shape, options[0])
    # The nearest option is one of the two around each value.
    above = np.clip(np.searchsorted(options, wanted), 1, options.size - 1)
    below = above - 1
    shorter = np.abs(options[below] - wanted) <= np.abs(options[above] - wanted)
    return np.where(shorter, options[below], options[above])


def cents(usd: ArrayLike) -> NDArray[np.float64]:
    """US dollars rounded to cents, the one rounding of every amount shown."""
    return np.asarray(usd, dtype=np.float64).round(2)


def savings(
    unit_price_usd: ArrayLike,
    quantity: ArrayLike,
    discount_percent: ArrayLike,
    interval_days: ArrayLike,
) -> Savings:
    """Per delivery = price * quantity * discount / 100; per month and year scale the rounded
    per-delivery amount by 30 / interval and 365 / interval, so the figures agree on screen."""
    per_delivery = cents(
        np.asarray(unit_price_usd, dtype=np.float64)
        * np.asarray(quantity, dtype=np.float64)
        * np.asarray(discount_percent, dtype=np.float64)
        / 100
    )
    interval = np.asarray(interval_days, dtype=np.float64)
    return Savings(
        per_delivery=per_delivery,
        monthly=cents(per_delivery * DAYS_PER_MONTH / interval),
        yearly=cents(per_delivery * DAYS_PER_YEAR / interval),
    )


def terms(
    *,
    predicted_interval_days: ArrayLike,
    quantity_per_day: ArrayLike,
    unit_price_usd: ArrayLike,
    mean_unit_price_usd: ArrayLike,
    discount_percent: ArrayLike,
    next_purchase_epoch_day: ArrayLike,
    as_of_epoch_day: ArrayLike,
    purchase_days: ArrayLike,
    grid: Sequence[int],
) -> OfferTerms:
    """The terms of each offer. The price is the product's shelf price, or what the shopper
    paid on average when the shelf price is 0 (unknown); deliveries carry whole units, the
    expected use over the interval rounded half up and at least 1; the first delivery goes out
    when the next purchase is expected, and never before the day after the analysis."""
    predicted = np.asarray(predicted_interval_days, dtype=np.float64)
    interval = snap_to_grid(predicted, grid)
    quantity = np.maximum(
        1.0, np.floor(np.asarray(quantity_per_day, dtype=np.float64) * interval + 0.5)
    )
    shelf = np.asarray(unit_price_usd, dtype=np.float64)
    price = np.where(shelf != 0, shelf, np.asarray(mean_unit_price_usd, dtype=np.float64))
    return OfferTerms(
        delivery_interval_days=interval,
        interval_snap_error_days=interval - predicted,
        quantity_per_delivery=quantity,
        savings=savings(price, quantity, discount_percent, interval),
        first_delivery_epoch_day=np.maximum(
            np.asarray(as_of_epoch_day, dtype=np.int64) + 1,
            np.asarray(next_purchase_epoch_day, dtype=np.int64),
        ),
        cold_start=np.asarray(purchase_days) < COLD_START_PURCHASE_DAYS,
    )
