"""Heuristic ranking: validation paths, eligibility, ordering, intervals, quantities, savings."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import pytest
from pantree.domain.v1 import analysis_pb2, offer_pb2, product_pb2
from pantree.recommendation.v1 import recommendation_service_pb2 as recommendation_pb2

from pantree_common.domain import dates
from pantree_common.errors import InvalidArgument
from services.recommendation.config import RecommendationConfig
from services.recommendation.offers import Savings, savings, snap_to_grid
from services.recommendation.scoring import rank, score, validate_rank_request

CONFIG = RecommendationConfig()
AS_OF = dates.to_epoch_day(dt.date(2025, 3, 1))


def item(product_id: str, **fields: Any) -> analysis_pb2.ItemStatistics:
    """A regular, current, confident rhythm unless told otherwise."""
    values: dict[str, Any] = {
        "purchase_days": 9,
        "mean_interval_days": 13,
        "median_interval_days": 13,
        "std_interval_days": 2,
        "days_since_last_purchase": 11,
        "recency_weight": 1.0,
        "confidence": 80.0,
        "meets_minimum_purchases": True,
        "quantity_per_day": 0.1,
        "mean_unit_price_usd": 2.0,
        "next_purchase_epoch_day": AS_OF + 2,
    }
    values.update(fields)
    return analysis_pb2.ItemStatistics(product_id=product_id, **values)


def product(product_id: str, category: str = "pantry", price: float = 4.0) -> product_pb2.Product:
    return product_pb2.Product(
        product_id=product_id, name=f"Name {product_id}", category=category, unit_price_usd=price
    )


def request(
    items: list[analysis_pb2.ItemStatistics],
    *,
    products: list[product_pb2.Product] | None = None,
    insights: list[offer_pb2.Insight] | None = None,
    max_offers: int = 0,
    archetype: str = "",
    **rules: Any,
) -> recommendation_pb2.RankCandidatesRequest:
    return recommendation_pb2.RankCandidatesRequest(
        analysis=analysis_pb2.HistoryAnalysis(as_of_epoch_day=AS_OF, min_purchases=2, items=items),
        products=products if products is not None else [product(i.product_id) for i in items],
        insights=insights or [],
        max_offers=max_offers,
        archetype=archetype,
        **rules,
    )


def ranked_ids(
    message: recommendation_pb2.RankCandidatesRequest, config: RecommendationConfig = CONFIG
) -> list[str]:
    return [offer.product.product_id for offer in rank(message, config).offers]


def violations(message: recommendation_pb2.RankCandidatesRequest) -> list[str]:
    with pytest.raises(InvalidArgument) as caught:
        validate_rank_request(message)
    return [v.field for v in caught.value.violations]


# --- validation -----------------------------------------------------------------------------


def test_a_valid_request_and_an_empty_one_pass() -> None:
    validate_rank_request(request([item("a"), item("b")], max_offers=100, archetype="busy_family"))
    validate_rank_request(recommendation_pb2.RankCandidatesRequest())


def test_every_bad_field_is_named_with_its_path() -> None:
    message = request(
        [
            item("ghost"),
            item("a", confidence=150),
            item("b", recency_weight=math.nan, median_interval_days=0),
            item("a"),
        ],
        products=[product("a"), product("b"), product("a")],
        insights=[
            offer_pb2.Insight(product_id="nobody", suggested_interval_days=7),
            offer_pb2.Insight(product_id="a", suggested_interval_days=0, reasoning="x" * 501),
        ],
        max_offers=101,
        archetype="night_owl",
    )
    assert violations(message) == [
        "products[2].product_id",
        "analysis.items[0].product_id",
        "analysis.items[1].confidence",
        "analysis.items[2].recency_weight",
        "analysis.items[2].median_interval_days",
        "analysis.items[3].product_id",
        "insights[0].product_id",
        "insights[1].suggested_interval_days",
        "insights[1].reasoning",
        "max_offers",
        "archetype",
    ]


def test_more_than_5000_products_is_rejected() -> None:
    message = recommendation_pb2.RankCandidatesRequest(
        products=[product(f"p{i}") for i in range(5001)]
    )
    assert violations(message) == ["products"]


@pytest.mark.parametrize("max_offers", [-1, 101])
def test_max_offers_is_0_or_1_to_100(max_offers: int) -> None:
    assert violations(request([item("a")], max_offers=max_offers)) == ["max_offers"]


# --- eligibility and order ------------------------------------------------------------------


def test_an_empty_analysis_yields_no_offers_scored_by_the_heuristic() -> None:
    response = rank(request([]), CONFIG)
    assert list(response.offers) == []
    assert response.scored_by == offer_pb2.SCORING_PATH_HEURISTIC


def test_offers_need_the_minimum_purchases_and_the_minimum_confidence() -> None:
    items = [
        item("sure", confidence=20.0),
        item("unsure", confidence=19.99),
        item("few", meets_minimum_purchases=False),
    ]
    assert ranked_ids(request(items)) == ["sure"]
    # Too few purchase days excludes a product whatever the confidence threshold.
    assert ranked_ids(request(items), RecommendationConfig(min_confidence=0)) == ["sure", "unsure"]


def test_categories_the_store_does_not_deliver_are_never_offered() -> None:
    items = [item("bread"), item("milk"), item("unknown"), item("catalog-less")]
    products = [
        product("bread", "bakery"),
        product("milk", "dairy"),
        product("unknown", "widgets"),
        product("catalog-less", ""),
    ]
    insights = [
        offer_pb2.Insight(product_id="catalog-less", category="produce", suggested_interval_days=7)
    ]
    assert ranked_ids(request(items, products=products, insights=insights)) == ["milk", "unknown"]


def test_score_blends_confidence_with_recency() -> None:
    assert score(item("a", confidence=80, recency_weight=0.5)) == pytest.approx(0.74)
    assert score(item("a", confidence=100, recency_weight=1)) == pytest.approx(1.0)
    assert score(item("a", confidence=0, recency_weight=0)) == 0.0


def test_offers_are_ordered_by_score_then_product_id_with_1_based_ranks() -> None:
    items = [
        item("c", confidence=60),
        item("b", confidence=90),
        item("a", confidence=60),
        item("d", confidence=95, recency_weight=0.0),
    ]
    offers = rank(request(items), CONFIG).offers
    # b: 0.92, d: 0.76, a and c: 0.68
    assert [(o.product.product_id, o.rank) for o in offers] == [
        ("b", 1),
        ("d", 2),
        ("a", 3),
        ("c", 4),
    ]
    assert [o.score for o in offers] == pytest.approx([0.92, 0.76, 0.68, 0.68])


def test_max_offers_caps_the_list_and_0_means_the_configured_default() -> None:
    items = [item(f"p{i:02d}", confidence=50 + i) for i in range(12)]
    assert ranked_ids(request(items, max_offers=3)) == ["p11", "p10", "p09"]
    assert len(ranked_ids(request(items))) == 10
    assert len(ranked_ids(request(items), RecommendationConfig(default_max_offers=4))) == 4


def test_the_bulk_discount_starts_at_five_subscriptions_counting_this_responses_offers() -> None:
    items = [item(f"p{i}") for i in range(5)]
    four = rank(request(items, max_offers=4), CONFIG).offers
    five = rank(request(items, max_offers=5), CONFIG).offers
    two_plus_three = rank(request(items, max_offers=2, active_subscriptions=3), CONFIG).offers
    assert {o.discount_percent for o in four} == {5.0}
    assert {o.discount_percent for o in five} == {15.0}
    assert {o.discount_percent for o in two_plus_three} == {15.0}


def test_below_the_lowest_tier_an_offer_saves_nothing() -> None:
    config = RecommendationConfig(discount_tiers="2:10")
    [offer] = rank(request([item("a")]), config).offers
    assert (offer.discount_percent, offer.savings_per_delivery_usd, offer.yearly_savings_usd) == (
        0.0,
        0.0,
        0.0,
    )


def test_excluded_products_from_the_request_and_the_store_are_never_offered() -> None:
    items = [item(name) for name in ("a", "b", "c", "d")]
    config = RecommendationConfig(excluded_products="b")
    message = request(items, excluded_product_ids=["c", "not-in-history"])
    assert ranked_ids(message, config) == ["a", "d"]


def test_never_subscribe_categories_are_left_out_case_insensitively() -> None:
    items = [item("bread"), item("milk")]
    products = [product("bread", "Bakery Bread"), product("milk", "dairy")]
    config = RecommendationConfig(never_subscribe_categories="bakery bread")
    assert ranked_ids(request(items, products=products), config) == ["milk"]
    assert sorted(ranked_ids(request(items, products=products))) == ["bread", "milk"]


def test_bad_offer_rules_name_their_fields() -> None:
    too_many = request([item("a")], excluded_product_ids=["x"] * 5_001)
    assert violations(too_many) == ["excluded_product_ids"]
    blank = request([item("a")], excluded_product_ids=["ok", " ", "y" * 129])
    assert violations(blank) == ["excluded_product_ids[1]", "excluded_product_ids[2]"]
    assert violations(request([item("a")], active_subscriptions=-1)) == ["active_subscriptions"]
    assert violations(request([item("a")], active_subscriptions=10_001)) == ["active_subscriptions"]


# --- intervals, quantities, savings ---------------------------------------------------------


@pytest.mark.parametrize(
    ("days", "expected"),
    [
        (10, 7),  # 3 from 7, 4 from 14
        (10.5, 7),  # a tie goes to the shorter interval
        (11, 14),
        (35, 28),  # tie between 28 and 42
        (45, 42),
        (0.5, 7),
        (400, 180),
    ],
)
def test_snap_to_grid(days: float, expected: int) -> None:
    assert snap_to_grid(days, CONFIG.grid) == expected


def test_savings_arithmetic() -> None:
    # 4.00 x 2 x 5% = 0.40 per delivery; 0.40 x 30 / 14 = 0.857; 0.40 x 365 / 14 = 10.428
    assert savings(4.0, 2.0, 5.0, 14) == Savings(0.40, 0.86, 10.43)


def test_an_offer_computed_by_hand() -> None:
    message = request(
        [item("p-1001", quantity_per_day=0.15)], products=[product("p-1001", "dairy", 3.89)]
    )
    [offer] = rank(message, CONFIG).offers
    assert offer.predicted_interval_days == 13
    assert offer.delivery_interval_days == 14
    assert offer.interval_snap_error_days == 1.0  # delivered every 14 days for a 13-day rhythm
    assert offer.quantity_per_delivery == 2.0  # 0.15 x 14 = 2.1 -> whole units
    assert offer.discount_percent == 5.0
    assert offer.savings_per_delivery_usd == 0.39  # 3.89 x 2 x 5% = 0.389
    assert offer.monthly_savings_usd == 0.84  # 0.39 x 30 / 14 = 0.8357
    assert offer.yearly_savings_usd == 10.17  # 0.39 x 365 / 14 = 10.168
    assert offer.confidence == 80.0
    assert dates.from_proto(offer.first_delivery_date, "f") == dt.date(2025, 3, 3)
    assert offer.reason == "Bought 9 times, every 13 days ± 2 on average; last bought 11 days ago."
    assert offer.insight_source == offer_pb2.INSIGHT_SOURCE_UNSPECIFIED
    assert list(offer.related_products) == []
    assert offer.product == product("p-1001", "dairy", 3.89)


def test_price_falls_back_to_the_history_and_quantity_is_at_least_one() -> None:
    message = request(
        [
            item(
                "a",
                quantity_per_day=0.01,
                mean_unit_price_usd=10.0,
                next_purchase_epoch_day=AS_OF - 30,
            )
        ],
        products=[product("a", price=0.0)],
    )
    [offer] = rank(message, CONFIG).offers
    assert offer.quantity_per_delivery == 1.0  # 0.01 x 14 = 0.14
    assert offer.savings_per_delivery_usd == 0.5  # 10.00 x 1 x 5%
    # The expected purchase is past: the first delivery is the day after the analysis.
    assert dates.from_proto(offer.first_delivery_date, "f") == dt.date(2025, 3, 2)


def test_an_insight_sets_the_interval_reason_related_products_and_source() -> None:
    related = product_pb2.ProductMatch(product=product("b"), similarity=0.9)
    insight = offer_pb2.Insight(
        product_id="a",
        category="pantry",
        suggested_interval_days=31.5,
        reasoning="Bought 9 times, every 31 days.",
        related_products=[related],
        source=offer_pb2.INSIGHT_SOURCE_LLM,
    )
    [offer] = rank(request([item("a", quantity_per_day=0.1)], insights=[insight]), CONFIG).offers
    assert offer.predicted_interval_days == 31.5
    assert offer.delivery_interval_days == 28
    assert offer.quantity_per_delivery == 3.0  # 0.1 x 28 = 2.8 -> whole units
    assert offer.reason == "Bought 9 times, every 31 days."
    assert list(offer.related_products) == [related]
    assert offer.insight_source == offer_pb2.INSIGHT_SOURCE_LLM


def test_offers_without_an_insight_show_close_similar_products() -> None:
    similar = [
        product_pb2.ProductMatch(product=product("b"), similarity=0.7),
        product_pb2.ProductMatch(product=product("a"), similarity=1.0),
        product_pb2.ProductMatch(product=product("c"), similarity=0.2),
    ]
    message = request([item("a")], products=[product("a"), product("b"), product("c")])
    message.related_products.add(product_id="a", matches=similar)
    [offer] = rank(message, CONFIG).offers
    assert [m.product.product_id for m in offer.related_products] == ["b"]
    assert offer.insight_source == offer_pb2.INSIGHT_SOURCE_UNSPECIFIED


def test_related_products_must_name_known_products_once() -> None:
    message = request([item("a")])
    message.related_products.add(product_id="zzz")
    message.related_products.add(product_id="a")
    message.related_products.add(product_id="a")
    with pytest.raises(InvalidArgument) as caught:
        validate_rank_request(message)
    assert [v.field for v in caught.value.violations] == [
        "related_products[0].product_id",
        "related_products[2].product_id",
    ]


def test_offers_on_two_purchase_days_are_flagged_cold_start() -> None:
    message = request(
        [item("a", purchase_days=2), item("b")], products=[product("a"), product("b")]
    )
    offers = {offer.product.product_id: offer for offer in rank(message, CONFIG).offers}
    assert offers["a"].cold_start
    assert not offers["b"].cold_start
