"""Settings of the simulation step."""

from dataclasses import dataclass

from pantree_common.config import setting
from pantree_common.errors import ConfigError


@dataclass(frozen=True)
class SimulationConfig:
    """How the simulation step paces its stream."""

    month_delay_ms: int = setting(
        "PANTREE_SIMULATION_MONTH_DELAY_MS",
        0,
        "Pause after each simulated month, in milliseconds (0-5000); lets demos show the stream.",
    )
    """Pacing only: the months are the same whatever the delay."""

    def validate(self) -> None:
        if not 0 <= self.month_delay_ms <= 5000:
            raise ConfigError(
                f"PANTREE_SIMULATION_MONTH_DELAY_MS must be 0-5000, got {self.month_delay_ms}"
            )
