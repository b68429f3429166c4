"""Settings of the frequency step."""

from dataclasses import dataclass

from pantree_common.config import setting
from pantree_common.errors import ConfigError

MIN_PURCHASES_RANGE = (2, 50)


@dataclass(frozen=True)
class FrequencyConfig:
    """Defaults of the repurchase statistics."""

    min_purchases: int = setting(
        "PANTREE_MIN_PURCHASES",
        3,
        "Purchase days a product needs before it gets a non-zero confidence (2-50).",
    )
    """Used when a request leaves min_purchases at 0."""

    def validate(self) -> None:
        low, high = MIN_PURCHASES_RANGE
        if not low <= self.min_purchases <= high:
            raise ConfigError(
                f"PANTREE_MIN_PURCHASES must be {low}-{high}, got {self.min_purchases}"
            )
