"""Settings of the SageMaker endpoint the recommendation step scores with first (sagemaker.py);
apart from the client so reading them never imports boto3."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from pantree_common.config import setting
from pantree_common.errors import ConfigError

DEFAULT_REGION = "us-east-1"
_ENDPOINT_NAME = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")
"""SageMaker's rule for endpoint names."""


@dataclass(frozen=True)
class SageMakerConfig:
    """Which SageMaker endpoint to call, and how hard to try before scoring in-process."""

    endpoint: str = setting(
        "PANTREE_SAGEMAKER_ENDPOINT",
        "",
        "SageMaker endpoint serving the model (`pantree model-server`); empty: score in-process.",
    )
    """The endpoint name, not its URL; credentials come from the usual AWS chain."""
    region: str = setting(
        "PANTREE_SAGEMAKER_REGION",
        "",
        "AWS region of the SageMaker endpoint; empty: AWS_REGION, else us-east-1.",
    )
    endpoint_url: str = setting(
        "PANTREE_SAGEMAKER_ENDPOINT_URL",
        "",
        "SageMaker runtime URL for VPC or local endpoints; empty: the region's public one.",
    )
    """For a VPC interface endpoint or a local stand-in (the tests use one)."""
    timeout_s: float = setting(
        "PANTREE_SAGEMAKER_TIMEOUT_S",
        2.0,
        "Connect and read timeout of one endpoint call in seconds, lowered to fit the deadline.",
    )
    """Each call gets min(this, the caller's remaining deadline less a margin)."""
    retries: int = setting(
        "PANTREE_SAGEMAKER_RETRIES",
        2,
        "Retries of a throttled or 5xx endpoint call, with jittered exponential backoff.",
    )
    """4xx answers (a request or model error) are never retried."""
    backoff_s: float = setting(
        "PANTREE_SAGEMAKER_BACKOFF_S",
        0.05,
        "First retry backoff in seconds; it doubles per retry, randomised (full jitter).",
    )
    breaker_failures: int = setting(
        "PANTREE_SAGEMAKER_BREAKER_FAILURES",
        5,
        "Consecutive failed endpoint calls after which it is not called for the cool-down.",
    )
    """A dead endpoint then costs nothing per request."""
    breaker_cooldown_s: float = setting(
        "PANTREE_SAGEMAKER_BREAKER_COOLDOWN_S",
        30.0,
        "Seconds the endpoint is left alone after the breaker opens; then one call tries it.",
    )

    def region_name(self, environ: Mapping[str, str]) -> str:
        """PANTREE_SAGEMAKER_REGION, else AWS_REGION or AWS_DEFAULT_REGION, else us-east-1."""
        return (
            self.region
            or environ.get("AWS_REGION")
            or environ.get("AWS_DEFAULT_REGION")
            or DEFAULT_REGION
        )

    def validate(self) -> None:
        """Reject values the client cannot work with, naming the variable to fix."""
        if self.endpoint and not _ENDPOINT_NAME.fullmatch(self.endpoint):
            raise ConfigError(
                "PANTREE_SAGEMAKER_ENDPOINT must be an endpoint name (letters, digits and "
                f"hyphens, at most 63), got {self.endpoint!r}"
            )
        if self.endpoint_url and not self.endpoint_url.startswith(("http://", "https://")):
            raise ConfigError(
                f"PANTREE_SAGEMAKER_ENDPOINT_URL must start with http:// or https://, "
                f"got {self.endpoint_url!r}"
            )
        bounds = (
            ("PANTREE_SAGEMAKER_TIMEOUT_S", self.timeout_s, 0.1, 60.0),
            ("PANTREE_SAGEMAKER_RETRIES", self.retries, 0, 10),
            ("PANTREE_SAGEMAKER_BACKOFF_S", self.backoff_s, 0.0, 10.0),
            ("PANTREE_SAGEMAKER_BREAKER_FAILURES", self.breaker_failures, 1, 1000),
            ("PANTREE_SAGEMAKER_BREAKER_COOLDOWN_S", self.breaker_cooldown_s, 0.0, 3600.0),
        )
        for env_var, value, low, high in bounds:
            if not low <= value <= high:
                raise ConfigError(f"{env_var} must be between {low:g} and {high:g}, got {value}")
