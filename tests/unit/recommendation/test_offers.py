"""Offer terms on arrays: the same answers as the per-offer definitions, element by element."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pantree.domain.v1 import analysis_pb2

from pantree_common.domain.reasons import rhythm_sentence, rhythm_text
from services.recommendation import offers
from services.recommendation.config import RecommendationConfig

GRID = RecommendationConfig().grid


def nearest(days: float, grid: tuple[int, ...]) -> int:
    """The definition: nearest grid value, the shorter on a tie."""
    return min(grid, key=lambda option: (abs(option - days), option))


@given(st.lists(st.floats(0, 400, allow_nan=False), min_size=1, max_size=50))
def test_snapping_an_array_agrees_with_the_definition(days: list[float]) -> None:
    assert offers.snap_to_grid(days, GRID).tolist() == [nearest(d, GRID) for d in days]


def test_snapping_ties_go_to_the_shorter_interval_and_a_one_value_grid_always_wins() -> None:
    ties = [10.5, 17.5, 35.0, 150.0]  # midway between 7/14, 14/21, 28/42, 120/180
    assert offers.snap_to_grid(ties, GRID).tolist() == [7, 14, 28, 120]
    assert offers.snap_to_grid([1.0, 300.0], (30,)).tolist() == [30, 30]


def test_the_heuristic_score_is_the_same_for_a_float_and_an_array() -> None:
    confidence, recency = [80.0, 33.3333, 0.0], [0.5, 0.123456789, 1.0]
    scalars = [offers.heuristic_score(c, r) for c, r in zip(confidence, recency, strict=True)]
    assert isinstance(scalars[0], float)
    arrays = offers.heuristic_score(np.array(confidence), np.array(recency))
    assert arrays.tolist() == scalars
    assert scalars[0] == pytest.approx(0.74)


def test_expected_purchase_day_rounds_half_to_even_like_python() -> None:
    intervals = [2.5, 3.5, 6.49, 6.5, 0.4]
    expected = offers.expected_purchase_day([100] * 5, intervals).tolist()
    assert expected == [100 + round(i) for i in intervals] == [102, 104, 106, 106, 100]


def test_eligibility_needs_purchases_an_offered_product_and_confidence() -> None:
    keep = offers.eligible(
        [True, False, True, True, True],
        [True, True, False, True, True],
        [20.0, 90.0, 90.0, 19.99, math.nan],
        20.0,
    )
    assert keep.tolist() == [True, False, False, False, False]


def test_the_store_offers_neither_excluded_products_nor_undeliverable_categories() -> None:
    never = frozenset({"frozen"})
    assert offers.store_offers("milk", "dairy", frozenset(), never)
    assert offers.store_offers("widget", "not in the catalog", frozenset(), never)
    assert not offers.store_offers("milk", "dairy", frozenset({"milk"}), never)
    assert not offers.store_offers("bread", "bakery", frozenset(), never)  # the catalog's rule
    assert not offers.store_offers("peas", "Frozen", frozenset(), never)  # the store's, any case


def test_savings_round_each_amount_to_cents_from_the_rounded_delivery_amount() -> None:
    saved = offers.savings([4.0, 3.89], [2.0, 2.0], [5.0, 5.0], [14, 14])
    assert saved.per_delivery.tolist() == [0.40, 0.39]
    assert saved.monthly.tolist() == [0.86, 0.84]  # 0.40 x 30 / 14; 0.39 x 30 / 14
    assert saved.yearly.tolist() == [10.43, 10.17]
    # numpy's rounding, not Python's round(): 2.675 (stored as 2.67499...) becomes 2.68 where
    # round(2.675, 2) gives 2.67. The RPC and the batch both call cents, so they agree.
    assert offers.cents([0.125, 1.005, 2.675]).tolist() == [0.12, 1.0, 2.68]


def test_offer_terms_computed_by_hand() -> None:
    terms = offers.terms(
        predicted_interval_days=[13.0, 20.0, 7.0],
        quantity_per_day=[0.15, 0.01, 1.0],
        unit_price_usd=[3.89, 0.0, 2.0],
        mean_unit_price_usd=[9.0, 10.0, 9.0],
        discount_percent=[5.0, 5.0, 15.0],
        next_purchase_epoch_day=[1002, 900, 1010],
        as_of_epoch_day=1000,
        purchase_days=[9, 3, 2],
        grid=GRID,
    )
    assert terms.delivery_interval_days.tolist() == [14, 21, 7]
    assert terms.interval_snap_error_days.tolist() == [1.0, 1.0, 0.0]
    # 0.15 x 14 = 2.1 -> 2; 0.01 x 21 = 0.21 -> at least 1; 1 x 7 = 7.
    assert terms.quantity_per_delivery.tolist() == [2.0, 1.0, 7.0]
    # The second has no shelf price: what the shopper paid on average (10.00) counts.
    assert terms.savings.per_delivery.tolist() == [0.39, 0.5, 2.1]
    # Never before the day after the analysis.
    assert terms.first_delivery_epoch_day.tolist() == [1002, 1001, 1010]
    assert terms.cold_start.tolist() == [False, False, True]


@pytest.mark.parametrize(
    ("purchase_days", "mean", "std", "days_since"),
    [
        (9, 13.0, 2.0, 11),
        (4, 28.666666, 0.577, 1),
        (2, 30.0, 0.0, 0),
        (1, 0.0, 0.0, 5),
        (0, 0, 0, 0),
    ],
)
def test_the_batch_reason_is_the_rpc_reason(
    purchase_days: int, mean: float, std: float, days_since: int
) -> None:
    statistics = analysis_pb2.ItemStatistics(
        purchase_days=purchase_days,
        mean_interval_days=mean,
        std_interval_days=std,
        days_since_last_purchase=days_since,
    )
    assert rhythm_text(purchase_days, mean, std, days_since) == rhythm_sentence(statistics)
