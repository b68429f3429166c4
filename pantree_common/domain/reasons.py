"""Sentences that explain an offer, built only from the numbers of the analysis.

Shared by the insights fallback and the recommendation step, so both explain a product alike.
"""

from __future__ import annotations

from collections.abc import Iterable

from pantree.domain.v1 import analysis_pb2, product_pb2

MAX_REASONING_CHARS = 500
MAX_QUOTED_CHARS = 60
MAX_RELATED = 5
# Below this cosine similarity a "similar" product is more noise than suggestion.
RELATED_MIN_SIMILARITY = 0.5


def rhythm_sentence(statistics: analysis_pb2.ItemStatistics) -> str:
    """What the history says about one product, for example: Bought 6 times, every 13 days ± 2
    on average; last bought 4 days ago."""
    return rhythm_text(
        statistics.purchase_days,
        statistics.mean_interval_days,
        statistics.std_interval_days,
        statistics.days_since_last_purchase,
    )


def rhythm_text(
    purchase_days: int, mean_interval_days: float, std_interval_days: float, days_since: int
) -> str:
    """rhythm_sentence from the four numbers it reads, for callers holding columns rather than
    messages (the batch job), so both word an offer alike."""
    ago = _ago(days_since)
    if purchase_days >= 2:
        plus_minus = f" ± {number(std_interval_days)}" if std_interval_days > 0 else ""
        return (
            f"Bought {purchase_days} times, every {number(mean_interval_days)} days{plus_minus} "
            f"on average; last bought {ago}."
        )
    if purchase_days == 1:
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


def close_matches(
    product: product_pb2.Product, matches: Iterable[product_pb2.ProductMatch]
) -> list[product_pb2.ProductMatch]:
    """The matches worth showing next to `product`: close enough, not the product itself nor
    another one that reads the same (real catalogs list one name under many ids), each name
    once, best first, at most MAX_RELATED."""
    # Filtering first also drops NaN similarities, which would scramble the sort.
    close = [m for m in matches if m.similarity >= RELATED_MIN_SIMILARITY]
    return distinct(product, sorted(close, key=lambda m: -m.similarity))


def distinct(
    product: product_pb2.Product,
    matches: Iterable[product_pb2.ProductMatch],
    limit: int = MAX_RELATED,
) -> list[product_pb2.ProductMatch]:
    """`matches` in their order without `product` itself, blank ids, or a product met before
    under the same id or a name that reads the same; at most `limit`."""
    seen_ids = {product.product_id}
    seen_names = {_same_name(product.name)} - {""}
    related: list[product_pb2.ProductMatch] = []
    for match in matches:
        match_id, name = match.product.product_id, _same_name(match.product.name)
        if match_id.strip() and match_id not in seen_ids and name not in seen_names:
            related.append(match)
            seen_ids.add(match_id)
            if name:
                seen_names.add(name)
            if len(related) == limit:
                break
    return related


def _same_name(name: str) -> str:
    return " ".join(name.lower().split())
