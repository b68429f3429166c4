"""Settings of the recommendation step: how many offers, how sure is sure enough, the discounts
and the delivery intervals a shopper can choose from."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

from pantree_common.config import setting, settings
from pantree_common.errors import ConfigError
from services.recommendation.endpoint_config import SageMakerConfig

MAX_OFFERS = 100
MAX_INTERVAL_DAYS = 365
MAX_SUBSCRIPTIONS = 10_000
"""Most active subscriptions a request may declare, and the highest tier threshold."""
# Allowed range of each numeric setting, by field name.
_BOUNDS: dict[str, tuple[float, float]] = {
    "default_max_offers": (1, MAX_OFFERS),
    "min_confidence": (0, 100),
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
    discount_tiers: str = setting(
        "PANTREE_DISCOUNT_TIERS",
        "0:5,5:15",
        "Discount tiers, comma-separated SUBSCRIPTIONS:PERCENT: a shopper with at least "
        "SUBSCRIPTIONS subscriptions (active ones plus this response's offers) gets PERCENT off "
        "the shelf price; none below the lowest tier.",
    )
    """As Amazon Subscribe & Save: 5% on any subscription, 15% with 5 or more."""
    never_subscribe_categories: str = setting(
        "PANTREE_NEVER_SUBSCRIBE_CATEGORIES",
        "",
        "Comma-separated categories never offered (case-insensitive), on top of those the "
        "catalog marks as not deliverable on a schedule (fresh bakery, deli).",
    )
    """A store's own policy: some aisles it will not put on a schedule."""
    excluded_products: str = setting(
        "PANTREE_EXCLUDED_PRODUCTS",
        "",
        "Comma-separated product ids never offered to anyone (discontinued, out of stock); "
        "requests add their own with excluded_product_ids.",
    )
    """Store-wide exclusions; a shopper's opt-outs come with each request."""
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
    endpoint: SageMakerConfig = field(default_factory=SageMakerConfig)

    @cached_property
    def grid(self) -> tuple[int, ...]:
        """The delivery intervals, ascending and without duplicates."""
        return parse_grid(self.delivery_grid_days)

    @cached_property
    def tiers(self) -> tuple[tuple[int, float], ...]:
        """(subscriptions, percent) pairs, ascending by subscriptions."""
        return parse_tiers(self.discount_tiers)

    @cached_property
    def never_subscribe(self) -> frozenset[str]:
        """Case-folded category names never offered."""
        return frozenset(_names(self.never_subscribe_categories, str.casefold))

    @cached_property
    def excluded(self) -> frozenset[str]:
        """Product ids never offered."""
        return frozenset(_names(self.excluded_products))

    def discount_percent(self, subscriptions: int) -> float:
        """The percent of the highest tier the shopper reaches; 0 below the lowest."""
        reached = [percent for minimum, percent in self.tiers if subscriptions >= minimum]
        return reached[-1] if reached else 0.0

    def validate(self) -> None:
        """Reject values the ranking cannot work with, naming the variable to fix."""
        nested = {s.env_var for s in settings(self.endpoint)}  # it validates itself
        env_vars = {
            f.name: declared.env_var
            for f, declared in zip(
                [f for f in dataclasses.fields(self) if f.name != "endpoint"],
                [s for s in settings(self) if s.env_var not in nested],
                strict=True,
            )
        }
        for name, (low, high) in _BOUNDS.items():
            value = getattr(self, name)
            if not low <= value <= high:
                raise ConfigError(f"{env_vars[name]} must be between {low} and {high}, got {value}")
        for name, parse in (("delivery_grid_days", parse_grid), ("discount_tiers", parse_tiers)):
            try:
                parse(getattr(self, name))
            except ValueError as exc:
                raise ConfigError(f"{env_vars[name]} {exc}") from None


def parse_grid(text: str) -> tuple[int, ...]:
    """Whole days from a comma-separated list, sorted and deduplicated; ValueError if bad."""
    try:
        days = sorted({int(part) for part in text.split(",")})
    except ValueError:
        raise ValueError(f"must be comma-separated whole days, got {text!r}") from None
    if days[0] < 1 or days[-1] > MAX_INTERVAL_DAYS:
        raise ValueError(f"must hold days from 1 to {MAX_INTERVAL_DAYS}, got {text!r}")
    return tuple(days)


def parse_tiers(text: str) -> tuple[tuple[int, float], ...]:
    """(subscriptions, percent) pairs from "0:5,5:15", ascending; ValueError if bad."""
    tiers: dict[int, float] = {}
    for part in text.split(","):
        minimum, colon, percent = part.partition(":")
        try:
            tier = (int(minimum), float(percent))
        except ValueError:
            tier = None
        if not colon or tier is None:
            raise ValueError(f"must be comma-separated SUBSCRIPTIONS:PERCENT pairs, got {text!r}")
        if not (0 <= tier[0] <= MAX_SUBSCRIPTIONS and 0 <= tier[1] <= 100):
            raise ValueError(
                f"needs subscriptions from 0 to {MAX_SUBSCRIPTIONS} and percents from 0 to 100, "
                f"got {part.strip()!r}"
            )
        if tier[0] in tiers:
            raise ValueError(f"names {tier[0]} subscriptions twice in {text!r}")
        tiers[tier[0]] = tier[1]
    return tuple(sorted(tiers.items()))


def _names(text: str, fold: Callable[[str], str] = str.strip) -> list[str]:
    """The non-empty entries of a comma-separated list, stripped (and folded)."""
    return [fold(part.strip()) for part in text.split(",") if part.strip()]
