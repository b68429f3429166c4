"""How real households rebuy, per category and archetype: what the simulator samples from.

Fitted from Complete Journey by pantree_common.datasets.catalog_build (or derived from the
built-in catalog's typical intervals) and stored inside the catalog file. Distributions are kept
as quantiles: small, exact enough for sampling, and readable in the JSON.

A rhythm is two-level, like real shoppers: each simulated item draws its own mean interval (a
household's pace for that product) and then every interval is that mean times a ratio drawn from
how much real households' gaps vary around their own mean.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
from numpy.typing import NDArray

QUANTILE_POINTS = 201
"""Quantiles stored per distribution (every 0.5%): heavy-tailed intervals need the resolution;
41 points put the simulated gaps visibly off (simulate-check, docs/SIMULATOR.md)."""
ALL_ARCHETYPES = ""
"""The archetype key of a rhythm fitted on every household."""


@dataclass(frozen=True)
class Quantiles:
    """A one-dimensional distribution as evenly spaced quantiles (0%, ..., 100%)."""

    values: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.values) < 2 or any(np.diff(self.values) < 0):
            raise ValueError("quantiles need at least two non-decreasing values")

    @classmethod
    def fit(
        cls,
        samples: NDArray[np.float64],
        weights: NDArray[np.float64] | None = None,
        points: int = QUANTILE_POINTS,
    ) -> Quantiles:
        """Weighted quantiles of `samples` (the inverse of the weighted empirical CDF)."""
        if samples.size == 0:
            raise ValueError("cannot fit quantiles to no samples")
        order = np.argsort(samples, kind="stable")
        ordered = samples[order]
        w = np.ones(samples.size) if weights is None else weights[order]
        cumulative = (np.cumsum(w) - w / 2) / w.sum()
        probabilities = np.linspace(0.0, 1.0, points)
        values = np.interp(probabilities, cumulative, ordered)
        return cls(tuple(round(float(v), 4) for v in np.maximum.accumulate(values)))

    @classmethod
    def constant(cls, value: float) -> Quantiles:
        return cls((value, value))

    def on_grid(self) -> NDArray[np.float64]:
        """The quantiles re-read at QUANTILE_POINTS evenly spaced probabilities (read-only)."""
        return self._grid

    @cached_property
    def _grid(self) -> NDArray[np.float64]:
        """Computed once per distribution: each simulated item reads four (ProcessSeed spent
        about a tenth of its time here, docs/BENCHMARKS.md)."""
        grid = np.linspace(0.0, 1.0, len(self.values))
        values: NDArray[np.float64] = np.interp(
            np.linspace(0.0, 1.0, QUANTILE_POINTS), grid, np.asarray(self.values)
        )
        values.flags.writeable = False
        return values

    @property
    def median(self) -> float:
        return float(np.interp(0.5, np.linspace(0.0, 1.0, len(self.values)), self.values))


@dataclass(frozen=True)
class Rhythm:
    """How the households of one archetype rebuy products of one category."""

    mean_interval_days: Quantiles
    """A product's mean interval for one household, weighted by how long the product stays in
    the household's basket (see catalog_build), in days."""
    interval_ratio: Quantiles
    """One interval divided by its household's mean interval for that product."""
    quantity: Quantiles
    """Units bought per purchase."""
    price_ratio: Quantiles
    """Unit price paid divided by the product's typical price (promotions pull it below 1)."""
    staple_mean_interval_days: Quantiles | None = None
    """Like mean_interval_days over the pairs bought on three or more days: the pace of a
    product a shopper names as a regular buy (a seed item). None: use mean_interval_days."""
    median_interval_days: float = 0.0
    """Median of every interval in the cell: "typically rebought every N days"."""
    pairs: int = 0
    """(household, product) pairs with two or more purchase days behind the fit."""
    intervals: int = 0
    """Intervals behind the fit."""

    @property
    def staple(self) -> Quantiles:
        return self.staple_mean_interval_days or self.mean_interval_days


@dataclass(frozen=True)
class Calibration:
    """Every fitted rhythm plus what a shopper of each archetype buys."""

    source: str
    rhythms: Mapping[tuple[str, str], Rhythm]
    """Keyed by (category, archetype id); archetype ALL_ARCHETYPES pools every household."""
    archetype_categories: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Per archetype, the categories its households rebuy more than others, best first."""
    related_categories: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Per category, the categories rebought by the same households, best first."""
    popular_products: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Per category, its most rebought product ids, best first."""
    window_days: int = 365
    """Length of the real data's observation window, in days (what simulate-check mirrors)."""
    bought_together: Mapping[str, tuple[tuple[str, float, int], ...]] = field(default_factory=dict)
    """Per product id, products of other categories that its rebuying households also rebuy,
    best first, each with the share of those households that do (0-1) and their number (0 in
    catalogs written before the number was kept)."""

    def rhythm(self, category: str, archetype: str) -> Rhythm | None:
        """The archetype's rhythm for the category, else every household's, else None."""
        return self.rhythms.get((category, archetype)) or self.rhythms.get(
            (category, ALL_ARCHETYPES)
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "window_days": self.window_days,
            "rhythms": [
                {
                    "category": category,
                    "archetype": archetype,
                    "mean_interval_days": list(r.mean_interval_days.values),
                    "interval_ratio": list(r.interval_ratio.values),
                    "quantity": list(r.quantity.values),
                    "price_ratio": list(r.price_ratio.values),
                    "staple_mean_interval_days": (
                        list(r.staple_mean_interval_days.values)
                        if r.staple_mean_interval_days
                        else None
                    ),
                    "median_interval_days": r.median_interval_days,
                    "pairs": r.pairs,
                    "intervals": r.intervals,
                }
                for (category, archetype), r in sorted(self.rhythms.items())
            ],
            "archetype_categories": {k: list(v) for k, v in self.archetype_categories.items()},
            "related_categories": {k: list(v) for k, v in self.related_categories.items()},
            "popular_products": {k: list(v) for k, v in self.popular_products.items()},
            "bought_together": {
                k: [[pid, share, households] for pid, share, households in v]
                for k, v in self.bought_together.items()
            },
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Calibration:
        def tuples(key: str) -> dict[str, tuple[str, ...]]:
            return {str(k): tuple(str(x) for x in v) for k, v in data.get(key, {}).items()}

        rhythms = {
            (str(r["category"]), str(r["archetype"])): Rhythm(
                _quantiles(r["mean_interval_days"]),
                _quantiles(r["interval_ratio"]),
                _quantiles(r["quantity"]),
                _quantiles(r["price_ratio"]),
                _quantiles(r["staple_mean_interval_days"])
                if r.get("staple_mean_interval_days")
                else None,
                float(r["median_interval_days"]),
                int(r.get("pairs", 0)),
                int(r.get("intervals", 0)),
            )
            for r in data["rhythms"]
        }
        return cls(
            str(data["source"]),
            rhythms,
            tuples("archetype_categories"),
            tuples("related_categories"),
            tuples("popular_products"),
            int(data.get("window_days", 365)),
            {
                str(k): tuple(
                    (str(entry[0]), float(entry[1]), int(entry[2]) if len(entry) > 2 else 0)
                    for entry in v
                )
                for k, v in data.get("bought_together", {}).items()
            },
        )


def _quantiles(values: Sequence[float]) -> Quantiles:
    return Quantiles(tuple(float(v) for v in values))


def sample_rows(
    table: NDArray[np.float64], rows: NDArray[np.int64], rng: np.random.Generator
) -> NDArray[np.float64]:
    """One inverse-CDF draw from each of `rows` of `table` (one distribution's quantiles per
    row, see Quantiles.on_grid): many items with different distributions in one numpy pass."""
    steps = table.shape[1] - 1
    position = rng.random(rows.size) * steps
    low = np.minimum(position.astype(np.int64), steps - 1)
    fraction = position - low
    drawn: NDArray[np.float64] = table[rows, low] * (1 - fraction) + table[rows, low + 1] * fraction
    return drawn


DEFAULT_RHYTHM = Rhythm(
    Quantiles.constant(14.0),
    Quantiles(tuple(round(float(v), 4) for v in np.linspace(0.6, 1.4, QUANTILE_POINTS))),
    Quantiles.constant(1.0),
    Quantiles.constant(1.0),
)
"""For a category nobody has fitted: fortnightly (between fresh food, about weekly, and household
stock, about monthly), gaps within 40% of the mean, one unit at the shelf price."""
