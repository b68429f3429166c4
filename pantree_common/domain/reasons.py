"""Sentences that explain an offer, built only from the numbers of the analysis.

Shared by the insights fallback and the recommendation step, so both explain a product alike.
"""

from __future__ import annotations

from pantree.domain.v1 import analysis_pb2

MAX_REASONING_CHARS = 500
MAX_QUOTED_CHARS = 60


def rhythm_sentence(statistics: analysis_pb2.ItemStatistics) -> str:
    """What the history says about one product, for example: Bought 6 times, every 13 days ± 2
    on average; last bought 4 days ago."""
    ago = _ago(statistics.days_since_last_purchase)
    if statistics.purchase_days >= 2:
        spread = statistics.std_interval_days
        plus_minus = f" ± {number(spread)}" if spread > 0 else ""
        return (f"Bought {statistics.purchase_days} times, every "
                f"{number(statistics.mean_interval_days)} days{plus_minus} on average; "
                f"last bought {ago}.")
    if statistics.purchase_days == 1:
        return f"Bought once, {ago}."
    return "Not bought yet."


def _ago(days: int) -> str:
    if days == 0:
        return "today"
    return "1 day ago" if days == 1 else f"{days} days ago"


def number(value: float) -> str:
    """A number as a reader wants it: at most one decimal, no trailing ".0"."""
    return f"{round(value, 1):g}"


def quote(text: str) -> str:
    """Show data (a product name, a category) as one quoted, trimmed line, so that quotes,
    newlines or instructions inside it cannot pass for part of the sentence."""
    flat = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    flat = flat.replace('"', "'")
    if len(flat) > MAX_QUOTED_CHARS:
        flat = flat[: MAX_QUOTED_CHARS - 1].rstrip() + "…"
    return f'"{flat}"'
