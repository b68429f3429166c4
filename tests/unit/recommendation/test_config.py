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
    assert (config.discount_percent, config.bulk_discount_percent) == (5.0, 15.0)
    assert config.bulk_discount_min_offers == 5


def test_loads_every_setting_from_the_environment() -> None:
    config = load(
        RecommendationConfig,
        {
            "PANTREE_MAX_OFFERS": "3",
            "PANTREE_MIN_CONFIDENCE": "42.5",
            "PANTREE_DISCOUNT_PERCENT": "10",
            "PANTREE_BULK_DISCOUNT_PERCENT": "20",
            "PANTREE_BULK_DISCOUNT_MIN_OFFERS": "2",
            "PANTREE_DELIVERY_GRID_DAYS": " 30, 10,10 ,20",
        },
    )
    assert config == RecommendationConfig(3, 42.5, 10.0, 20.0, 2, " 30, 10,10 ,20")
    assert config.grid == (10, 20, 30)


@pytest.mark.parametrize(
    ("env_var", "value"),
    [
        ("PANTREE_DELIVERY_GRID_DAYS", "7,x"),
        ("PANTREE_DELIVERY_GRID_DAYS", ""),
        ("PANTREE_DELIVERY_GRID_DAYS", "7,14,"),
        ("PANTREE_DELIVERY_GRID_DAYS", "0,7"),
        ("PANTREE_DELIVERY_GRID_DAYS", "7,366"),
        ("PANTREE_DISCOUNT_PERCENT", "100.5"),
        ("PANTREE_BULK_DISCOUNT_PERCENT", "-1"),
        ("PANTREE_MIN_CONFIDENCE", "101"),
        ("PANTREE_MAX_OFFERS", "0"),
        ("PANTREE_MAX_OFFERS", "101"),
        ("PANTREE_BULK_DISCOUNT_MIN_OFFERS", "0"),
    ],
)
def test_bad_values_are_a_config_error_naming_the_variable(env_var: str, value: str) -> None:
    with pytest.raises(ConfigError, match=env_var):
        load(RecommendationConfig, {env_var: value})
