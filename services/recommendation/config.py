"""Settings of the recommendation step: how many offers, how sure is sure enough, the discounts
and the delivery intervals a shopper can choose from."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import cached_property

from pantree_common.config import setting, settings
from pantree_common.errors import ConfigError

MAX_OFFERS = 100
MAX_INTERVAL_DAYS = 365
# Allowed range of each numeric setting, by field name.
_BOUNDS: dict[str, tuple[float, float]] = {
    "default_max_offers": (1, MAX_OFFERS),
    "min_confidence": (0, 100),
    "discount_percent": (0, 100),
    "bulk_discount_percent": (0, 100),
    "bulk_discount_min_offers": (1, MAX_OFFERS),
}


@dataclass(frozen=True)
class RecommendationConfig:
    """How offers are chosen and priced."""

    default_max_offers: int = setting(
        "PANTREE_MAX_OFFERS", 10, "Offers returned when a request leaves max_offers at 0, 1-100."
    )
    """A short list the shopper can actually read."""
    min_confidence: float = setting(
        "PANTREE_MIN_CONFIDENCE",
        20.0,
        "Products whose rhythm confidence (0-100) is below this are never offered.",
    )
    """Below this the rhythm is too shaky to promise deliveries on it."""
    discount_percent: float = setting(
        "PANTREE_DISCOUNT_PERCENT", 5.0, "Subscription discount in percent of the shelf price."
    )
    """The everyday Subscribe & Save discount."""
    bulk_discount_percent: float = setting(
        "PANTREE_BULK_DISCOUNT_PERCENT",
        15.0,
        "Discount in percent when at least PANTREE_BULK_DISCOUNT_MIN_OFFERS offers are made.",
    )
    """The larger discount that rewards subscribing to many products at once."""
    bulk_discount_min_offers: int = setting(
        "PANTREE_BULK_DISCOUNT_MIN_OFFERS",
        5,
        "Offers in one response from which the bulk discount applies.",
    )
    """As Amazon Subscribe & Save: 15% with 5 or more active subscriptions."""
    delivery_grid_days: str = setting(
        "PANTREE_DELIVERY_GRID_DAYS",
        "7,14,21,28,42,56,90,120,180",
        "Delivery intervals a shopper can choose, comma-separated whole days from 1 to 365.",
    )
    """Predicted intervals snap to these, as a store only runs a few schedules."""
    model_path: str = setting(
        "PANTREE_MODEL_PATH",
        "",
        "Directory of a model written by `pantree train`; empty: rank with the statistics.",
    )
    """A model that fails its integrity check stops the service from starting."""

    @cached_property
    def grid(self) -> tuple[int, ...]:
        """The delivery intervals, ascending and without duplicates."""
        return parse_grid(self.delivery_grid_days)

    def validate(self) -> None:
        """Reject values the ranking cannot work with, naming the variable to fix."""
        env_vars = {
            f.name: declared.env_var
            for f, declared in zip(dataclasses.fields(self), settings(self), strict=True)
        }
        for name, (low, high) in _BOUNDS.items():
            value = getattr(self, name)
            if not low <= value <= high:
                raise ConfigError(f"{env_vars[name]} must be between {low} and {high}, got {value}")
        try:
            parse_grid(self.delivery_grid_days)
        except ValueError as exc:
            raise ConfigError(f"{env_vars['delivery_grid_days']} {exc}") from None


def parse_grid(text: str) -> tuple[int, ...]:
    """Whole days from a comma-separated list, sorted and deduplicated; ValueError if bad."""
    try:
        days = sorted({int(part) for part in text.split(",")})
    except ValueError:
        raise ValueError(f"must be comma-separated whole days, got {text!r}") from None
    if days[0] < 1 or days[-1] > MAX_INTERVAL_DAYS:
        raise ValueError(f"must hold days from 1 to {MAX_INTERVAL_DAYS}, got {text!r}")
    return tuple(days)
