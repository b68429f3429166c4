"""RecommendationConfig: defaults, loading from an environment mapping, rejected values."""

from __future__ import annotations

import pytest

from pantree_common.config import load
from pantree_common.errors import ConfigError
from services.recommendation.config import RecommendationConfig


def test_defaults() -> None:
    config = load(RecommendationConfig, {})
    assert config == RecommendationConfig()
    assert config.grid == (7, 14, 21, 28, 42, 56, 90, 120, 180)
    assert (config.default_max_offers, config.min_confidence) == (10, 20.0)
    assert config.tiers == ((0, 5.0), (5, 15.0))
    assert (config.never_subscribe, config.excluded) == (frozenset(), frozenset())


def test_loads_every_setting_from_the_environment() -> None:
    config = load(
        RecommendationConfig,
        {
            "PANTREE_MAX_OFFERS": "3",
            "PANTREE_MIN_CONFIDENCE": "42.5",
            "PANTREE_DISCOUNT_TIERS": "3:20, 1:10",
            "PANTREE_NEVER_SUBSCRIBE_CATEGORIES": "Fresh Bakery, ,DELI",
            "PANTREE_EXCLUDED_PRODUCTS": "cj-1, cj-2",
            "PANTREE_DELIVERY_GRID_DAYS": " 30, 10,10 ,20",
        },
    )
    assert (config.default_max_offers, config.min_confidence) == (3, 42.5)
    assert config.grid == (10, 20, 30)
    assert config.tiers == ((1, 10.0), (3, 20.0))
    assert config.never_subscribe == {"fresh bakery", "deli"}
    assert config.excluded == {"cj-1", "cj-2"}


@pytest.mark.parametrize(
    ("subscriptions", "percent"), [(0, 0.0), (1, 10.0), (2, 10.0), (3, 20.0), (99, 20.0)]
)
def test_the_highest_tier_reached_sets_the_discount(subscriptions: int, percent: float) -> None:
    config = RecommendationConfig(discount_tiers="1:10,3:20")
    assert config.discount_percent(subscriptions) == percent


@pytest.mark.parametrize(
    ("env_var", "value"),
    [
        ("PANTREE_DELIVERY_GRID_DAYS", "7,x"),
        ("PANTREE_DELIVERY_GRID_DAYS", ""),
        ("PANTREE_DELIVERY_GRID_DAYS", "7,14,"),
        ("PANTREE_DELIVERY_GRID_DAYS", "0,7"),
        ("PANTREE_DELIVERY_GRID_DAYS", "7,366"),
        ("PANTREE_DISCOUNT_TIERS", "0:100.5"),
        ("PANTREE_DISCOUNT_TIERS", "0:-1"),
        ("PANTREE_DISCOUNT_TIERS", "-1:5"),
        ("PANTREE_DISCOUNT_TIERS", "5"),
        ("PANTREE_DISCOUNT_TIERS", "0:5,0:15"),
        ("PANTREE_DISCOUNT_TIERS", "0:x"),
        ("PANTREE_DISCOUNT_TIERS", ""),
        ("PANTREE_MIN_CONFIDENCE", "101"),
        ("PANTREE_MAX_OFFERS", "0"),
        ("PANTREE_MAX_OFFERS", "101"),
    ],
)
def test_bad_values_are_a_config_error_naming_the_variable(env_var: str, value: str) -> None:
    with pytest.raises(ConfigError, match=env_var):
        load(RecommendationConfig, {env_var: value})
