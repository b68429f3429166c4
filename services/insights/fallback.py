"""Rule-based insights, used when no language model is configured or its answer is rejected.

Related products alternate between the vector search's close matches (similar names) and what
the catalog's co-purchase statistics say households rebuy together (Complete Journey; the
built-in catalog has none). Every sentence is built only from the numbers in the request and
the catalog, so a fallback insight can never claim something the data does not say.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from itertools import chain, zip_longest

from pantree.domain.v1 import analysis_pb2, offer_pb2, product_pb2
from pantree.insights.v1 import insights_service_pb2 as insights_pb2

from pantree_common.domain import catalog
from pantree_common.domain.history import (
    MAX_CATEGORY_CHARS,
    MAX_ID_CHARS,
    MAX_NAME_CHARS,
    check_price,
    check_text,
)
from pantree_common.domain.reasons import (
    MAX_RELATED,
    close_matches,
    distinct,
    number,
    quote,
    rhythm_sentence,
)
from pantree_common.errors import Collector

MAX_CANDIDATES = 200
MAX_SIMILAR_PRODUCTS = 50
MAX_OFFERED = 2 * MAX_RELATED
"""Related products a language model may choose from: every close match and co-purchase."""
"""Cosine similarity below which a vector-search match is too loose to call related."""
DEFAULT_INTERVAL_DAYS = 14.0
"""Cold-start interval for a category the catalog does not know: a fortnightly shop."""
MIN_INTERVAL_DAYS = 1.0
MAX_INTERVAL_DAYS = 365.0
"""Longest name or category shown in a reason; names are data and must not crowd out numbers."""
UNKNOWN_CATEGORY = "other"
# Statistics the rules read; negative or non-finite values would put nonsense in the reason.
_USED_STATISTICS = (
    "purchase_days",
    "mean_interval_days",
    "median_interval_days",
    "std_interval_days",
    "coefficient_of_variation",
    "days_since_last_purchase",
)


def validate_candidates(request: insights_pb2.EnrichCandidatesRequest) -> None:
    """Check an EnrichCandidates request; raises InvalidArgument naming every bad field."""
    errors = Collector()
    count = len(request.candidates)
    if not 1 <= count <= MAX_CANDIDATES:
        errors.add("candidates", f"must hold 1 to {MAX_CANDIDATES} candidates, got {count}")
    seen: set[str] = set()
    for i, candidate in enumerate(request.candidates[:MAX_CANDIDATES]):
        path = f"candidates[{i}]"
        product = candidate.product
        product_id = product.product_id
        check_text(errors, product_id, f"{path}.product.product_id", MAX_ID_CHARS, required=True)
        if product_id.strip() and product_id in seen:
            errors.add(f"{path}.product.product_id", f"duplicate product_id {product_id[:64]!r}")
        seen.add(product_id)
        check_text(errors, product.name, f"{path}.product.name", MAX_NAME_CHARS, required=True)
        check_text(
            errors, product.category, f"{path}.product.category", MAX_CATEGORY_CHARS, required=False
        )
        statistics = candidate.statistics
        if statistics.product_id not in ("", product_id):
            errors.add(
                f"{path}.statistics.product_id", "must be empty or equal to product.product_id"
            )
        for name in _USED_STATISTICS:
            check_price(errors, getattr(statistics, name), f"{path}.statistics.{name}")
        matches = len(candidate.similar_products)
        if matches > MAX_SIMILAR_PRODUCTS:
            errors.add(
                f"{path}.similar_products", f"at most {MAX_SIMILAR_PRODUCTS} matches, got {matches}"
            )
    catalog.check_archetype(errors, request.archetype, required=False)
    errors.raise_if_any()


def enrich(candidates: Sequence[insights_pb2.Candidate], archetype: str) -> list[offer_pb2.Insight]:
    """One fallback insight per candidate, in request order; the request is already validated.
    A candidate's related products leave out the other candidates (the shopper buys them)."""
    shopper = catalog.ARCHETYPES.get(archetype)
    bought = {candidate.product.product_id for candidate in candidates}
    return [_insight(candidate, shopper, bought) for candidate in candidates]


def _insight(
    candidate: insights_pb2.Candidate, shopper: catalog.Archetype | None, bought: Collection[str]
) -> offer_pb2.Insight:
    category = category_of(candidate.product)
    related = offered_products(candidate, bought)[:MAX_RELATED]
    interval = suggested_interval_days(candidate.statistics, category, shopper)
    return offer_pb2.Insight(
        product_id=candidate.product.product_id,
        category=category,
        related_products=related,
        suggested_interval_days=interval,
        reasoning=reasoning(candidate.statistics, category, interval, related, shopper),
        source=offer_pb2.INSIGHT_SOURCE_FALLBACK,
    )


def category_of(product: product_pb2.Product) -> str:
    """The product's own category, else the catalog's for its id, else "other"."""
    known = catalog.products_by_id().get(product.product_id)
    return product.category.strip() or (known.category if known else UNKNOWN_CATEGORY)


def offered_products(
    candidate: insights_pb2.Candidate, bought: Collection[str]
) -> list[product_pb2.ProductMatch]:
    """Close similar products and products bought together, in turn (best of each first), each
    product once; at most MAX_OFFERED. `bought` are ids not to suggest."""
    similar = [
        product_pb2.ProductMatch(
            product=match.product,
            similarity=match.similarity,
            relation=product_pb2.PRODUCT_RELATION_SIMILAR,
        )
        for match in close_matches(candidate.product, candidate.similar_products)
    ]
    together = bought_together(candidate.product.product_id, bought)
    mixed = (m for m in chain.from_iterable(zip_longest(similar, together)) if m is not None)
    return distinct(candidate.product, mixed, MAX_OFFERED)


def bought_together(product_id: str, bought: Collection[str]) -> list[product_pb2.ProductMatch]:
    """What households rebuying the product also rebuy, from the active catalog, best first."""
    active = catalog.active_catalog()
    return [
        product_pb2.ProductMatch(
            product=active.by_id[other].to_proto(),
            relation=product_pb2.PRODUCT_RELATION_BOUGHT_TOGETHER,
            co_purchase_share=share,
            co_purchase_households=households,
        )
        for other, share, households in active.calibration.bought_together.get(product_id, ())
        if other in active.by_id and other not in bought
    ]


def suggested_interval_days(
    statistics: analysis_pb2.ItemStatistics, category: str, shopper: catalog.Archetype | None
) -> float:
    """The shopper's own rhythm when there is one, else the category's scaled to the household.

    With >= 2 purchase days the median is blended toward the mean by regularity = 1 / (1 + CV):
    a regular rhythm trusts the mean (it uses every interval), an erratic one the median (it
    ignores the odd long gap). Cold items take the category's typical interval (14 days when the
    category is unknown) times the archetype's interval factor. Clamped to 1-365 days, 0.1 day.
    """
    if statistics.purchase_days >= 2:
        regularity = 1 / (1 + statistics.coefficient_of_variation)
        median = statistics.median_interval_days
        days = median + regularity * (statistics.mean_interval_days - median)
    else:
        days = _typical_interval_days(category) * (shopper.interval_factor if shopper else 1.0)
    return round(min(max(days, MIN_INTERVAL_DAYS), MAX_INTERVAL_DAYS), 1)


def _typical_interval_days(category: str) -> float:
    known = catalog.active_catalog().categories.get(category)
    return known.typical_interval_days if known else DEFAULT_INTERVAL_DAYS


def reasoning(
    statistics: analysis_pb2.ItemStatistics,
    category: str,
    interval_days: float,
    related: Sequence[product_pb2.ProductMatch],
    shopper: catalog.Archetype | None,
) -> str:
    """One or two sentences from the statistics; at most MAX_REASONING_CHARS by construction
    (numbers are short, every name is quoted and trimmed to MAX_QUOTED_CHARS)."""
    parts = [rhythm_sentence(statistics)]
    if statistics.purchase_days < 2:
        parts.append(_cold_sentence(category, interval_days, shopper))
    similar = _first(related, product_pb2.PRODUCT_RELATION_SIMILAR)
    if similar is not None:
        parts.append(f"Similar to {_name(similar)}.")
    together = _first(related, product_pb2.PRODUCT_RELATION_BOUGHT_TOGETHER)
    if together is not None:
        percent = number(100 * together.co_purchase_share)
        households = together.co_purchase_households
        parts.append(
            f"{households} households that rebuy it also rebuy {_name(together)} ({percent}% of "
            "those that rebuy it)."
            if households
            else f"{percent}% of households that rebuy it also rebuy {_name(together)}."
        )
    return " ".join(parts)


def _first(
    related: Sequence[product_pb2.ProductMatch], relation: product_pb2.ProductRelation.ValueType
) -> product_pb2.ProductMatch | None:
    return next((match for match in related if match.relation == relation), None)


def _name(match: product_pb2.ProductMatch) -> str:
    return quote(match.product.name or match.product.product_id)


def _cold_sentence(category: str, interval_days: float, shopper: catalog.Archetype | None) -> str:
    typical = number(_typical_interval_days(category))
    if category in catalog.active_catalog().categories:
        text = f"{category.capitalize()} is typically rebought every {typical} days"
    else:
        text = f"No typical interval is known for {quote(category)}, so {typical} days is assumed"
    if shopper:
        text += f" ({number(interval_days)} for {shopper.display_name.lower()} shoppers)"
    return text + "."
