"""Heuristic ranking, used when no trained model is available: repurchase statistics become
Subscribe & Save offers with a delivery interval, a quantity and the money saved."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass

from pantree.domain.v1 import analysis_pb2, offer_pb2, product_pb2
from pantree.recommendation.v1 import recommendation_service_pb2 as recommendation_pb2

from pantree_common.domain import catalog, dates
from pantree_common.domain.history import MAX_ID_CHARS, check_products, check_text
from pantree_common.domain.reasons import MAX_REASONING_CHARS, close_matches, rhythm_sentence
from pantree_common.errors import Collector
from services.recommendation import offers
from services.recommendation.config import (
    MAX_INTERVAL_DAYS,
    MAX_OFFERS,
    MAX_SUBSCRIPTIONS,
    RecommendationConfig,
)
from services.recommendation.model import Predictions, SubscriptionModel

MAX_RELATED = 10
MAX_EXCLUDED = 5_000
MAX_MATCHES = 50
_LAST_EPOCH_DAY = dates.to_epoch_day(dt.date.max)
# Statistics the ranking reads, with their allowed ranges; anything else would make a nonsense
# score, interval or date.
_ITEM_RANGES: tuple[tuple[str, float, float], ...] = (
    ("confidence", 0, 100),
    ("recency_weight", 0, 1),
    ("median_interval_days", 0, math.inf),
    ("quantity_per_day", 0, math.inf),
    ("mean_unit_price_usd", 0, math.inf),
    ("next_purchase_epoch_day", 0, _LAST_EPOCH_DAY),
)


def validate_rank_request(request: recommendation_pb2.RankCandidatesRequest) -> None:
    """Check a RankCandidates request; raises InvalidArgument naming every bad field. An empty
    analysis is valid: it yields no offers."""
    errors = Collector()
    check_products(errors, request.products, "products")
    known = {product.product_id for product in request.products}
    analysis = request.analysis
    _check_range(
        errors, analysis.as_of_epoch_day, "analysis.as_of_epoch_day", 0, _LAST_EPOCH_DAY - 1
    )
    seen: set[str] = set()
    for i, item in enumerate(analysis.items):
        path = f"analysis.items[{i}]"
        _check_product_id(errors, item.product_id, known, seen, f"{path}.product_id")
        for name, low, high in _ITEM_RANGES:
            _check_range(errors, getattr(item, name), f"{path}.{name}", low, high)
        if item.meets_minimum_purchases and not item.median_interval_days > 0:
            errors.add(
                f"{path}.median_interval_days", "must be > 0 when meets_minimum_purchases is set"
            )
    seen = set()
    for i, insight in enumerate(request.insights):
        path = f"insights[{i}]"
        _check_product_id(errors, insight.product_id, known, seen, f"{path}.product_id")
        _check_range(
            errors,
            insight.suggested_interval_days,
            f"{path}.suggested_interval_days",
            1,
            MAX_INTERVAL_DAYS,
        )
        check_text(
            errors, insight.reasoning, f"{path}.reasoning", MAX_REASONING_CHARS, required=False
        )
        if len(insight.related_products) > MAX_RELATED:
            errors.add(
                f"{path}.related_products",
                f"at most {MAX_RELATED} products, got {len(insight.related_products)}",
            )
    seen = set()
    for i, related in enumerate(request.related_products):
        path = f"related_products[{i}]"
        _check_product_id(errors, related.product_id, known, seen, f"{path}.product_id")
        if len(related.matches) > MAX_MATCHES:
            errors.add(
                f"{path}.matches", f"at most {MAX_MATCHES} matches, got {len(related.matches)}"
            )
    check_offer_rules(errors, request.excluded_product_ids, request.active_subscriptions)
    if request.max_offers != 0 and not 1 <= request.max_offers <= MAX_OFFERS:
        errors.add(
            "max_offers",
            f"must be 0 (server default) or 1 to {MAX_OFFERS}, got {request.max_offers}",
        )
    catalog.check_archetype(errors, request.archetype, required=False)
    errors.raise_if_any()


def check_offer_rules(
    errors: Collector, excluded_product_ids: Sequence[str], active_subscriptions: int
) -> None:
    """The shopper's own offer rules, as RankCandidates and Recommend both take them."""
    if len(excluded_product_ids) > MAX_EXCLUDED:
        errors.add(
            "excluded_product_ids",
            f"at most {MAX_EXCLUDED:,} ids, got {len(excluded_product_ids):,}",
        )
    else:
        for i, product_id in enumerate(excluded_product_ids):
            check_text(
                errors, product_id, f"excluded_product_ids[{i}]", MAX_ID_CHARS, required=True
            )
    if not 0 <= active_subscriptions <= MAX_SUBSCRIPTIONS:
        errors.add(
            "active_subscriptions",
            f"must be from 0 to {MAX_SUBSCRIPTIONS:,}, got {active_subscriptions}",
        )


def _check_product_id(
    errors: Collector, product_id: str, known: set[str], seen: set[str], field: str
) -> None:
    """Each entry must describe a product of the request, and only once."""
    if product_id not in known:
        errors.add(field, f"product_id {product_id[:64]!r} is not in products")
    elif product_id in seen:
        errors.add(field, f"duplicate product_id {product_id[:64]!r}")
    seen.add(product_id)


def _check_range(errors: Collector, value: float, field: str, low: float, high: float) -> None:
    if not (math.isfinite(value) and low <= value <= high):
        bounds = f">= {low:g}" if high == math.inf else f"from {low:g} to {high:g}"
        errors.add(field, f"must be a finite number {bounds}, got {value}")


@dataclass(frozen=True)
class Judgement:
    """What a scorer says of one product: how to rank it, how sure, and how often."""

    score: float
    confidence: float
    """0 to 100; the learned model's is a calibrated probability x 100."""
    next_purchase_epoch_day: int
    """When the product is expected to be bought next: the first delivery goes out then."""


def heuristic(item: analysis_pb2.ItemStatistics) -> Judgement:
    """The statistics' own judgement, used when no trained model is loaded."""
    return Judgement(score(item), item.confidence, item.next_purchase_epoch_day)


def _judgements(
    request: recommendation_pb2.RankCandidatesRequest,
    products: dict[str, product_pb2.Product],
    model: SubscriptionModel | None,
    remote: Predictions | None = None,
) -> tuple[dict[str, Judgement], offer_pb2.ScoringPath.ValueType]:
    """The first link of the chain that has an answer: the endpoint's (`remote`), the local
    model's, the heuristic's."""
    items = request.analysis.items
    if remote is not None:
        predicted, path = remote, offer_pb2.SCORING_PATH_SAGEMAKER
    elif model is None:
        return {
            item.product_id: heuristic(item) for item in items
        }, offer_pb2.SCORING_PATH_HEURISTIC
    elif not items:
        return {}, offer_pb2.SCORING_PATH_LOCAL_MODEL
    else:
        predicted = model.predict_analysis(request.analysis, products)
        path = offer_pb2.SCORING_PATH_LOCAL_MODEL
    # The model's interval runs from the last purchase to the next one expected within the
    # horizon: it dates the first delivery, while the cadence stays the shopper's own rhythm.
    expected = offers.expected_purchase_day(
        [item.last_purchase_epoch_day for item in items], predicted.interval_days
    )
    judged = {
        item.product_id: Judgement(score_, confidence, next_day)
        for item, score_, confidence, next_day in zip(
            items,
            predicted.score.tolist(),
            predicted.confidence.tolist(),
            expected.tolist(),
            strict=True,
        )
    }
    return judged, path


def rank(
    request: recommendation_pb2.RankCandidatesRequest,
    config: RecommendationConfig,
    model: SubscriptionModel | None = None,
    remote: Predictions | None = None,
) -> recommendation_pb2.RankCandidatesResponse:
    """The best offers first, at most max_offers; the request is already validated. With a
    trained model, its calibrated probabilities and intervals replace the statistics' own; the
    SageMaker endpoint's predictions (`remote`, sagemaker.EndpointScorer) win over both.
    Eligibility and every offer's terms come from services.recommendation.offers, as the batch
    job's do."""
    products = {product.product_id: product for product in request.products}
    insights = {insight.product_id: insight for insight in request.insights}
    related = {entry.product_id: entry.matches for entry in request.related_products}
    judged, path = _judgements(request, products, model, remote)
    excluded = config.excluded.union(request.excluded_product_ids)
    items = request.analysis.items
    keep = offers.eligible(
        [item.meets_minimum_purchases for item in items],
        [
            offers.store_offers(
                item.product_id,
                _category(products[item.product_id], insights.get(item.product_id)),
                excluded,
                config.never_subscribe,
            )
            for item in items
        ],
        [judged[item.product_id].confidence for item in items],
        config.min_confidence,
    )
    eligible = [item for item, ok in zip(items, keep.tolist(), strict=True) if ok]
    eligible.sort(key=lambda item: (-judged[item.product_id].score, item.product_id))
    kept = eligible[: request.max_offers or config.default_max_offers]
    discount = config.discount_percent(request.active_subscriptions + len(kept))
    predicted = [_predicted_interval(item, insights.get(item.product_id)) for item in kept]
    terms = offers.terms(
        predicted_interval_days=predicted,
        quantity_per_day=[item.quantity_per_day for item in kept],
        unit_price_usd=[products[item.product_id].unit_price_usd for item in kept],
        mean_unit_price_usd=[item.mean_unit_price_usd for item in kept],
        discount_percent=discount,
        next_purchase_epoch_day=[judged[item.product_id].next_purchase_epoch_day for item in kept],
        as_of_epoch_day=request.analysis.as_of_epoch_day,
        purchase_days=[item.purchase_days for item in kept],
        grid=config.grid,
    )
    ranked = [
        _offer(
            item,
            judged[item.product_id],
            products[item.product_id],
            insights.get(item.product_id),
            related.get(item.product_id, ()),
            position=position,
            discount_percent=discount,
            predicted_interval_days=predicted[row],
            terms=terms,
            row=row,
        )
        for row, (position, item) in enumerate(enumerate(kept, start=1))
    ]
    return recommendation_pb2.RankCandidatesResponse(offers=ranked, scored_by=path)


def _category(product: product_pb2.Product, insight: offer_pb2.Insight | None) -> str:
    return product.category or (insight.category if insight else "")


def _predicted_interval(
    item: analysis_pb2.ItemStatistics, insight: offer_pb2.Insight | None
) -> float:
    """The insight's suggested interval when there is one, else the shopper's median gap."""
    return insight.suggested_interval_days if insight else item.median_interval_days


def score(item: analysis_pb2.ItemStatistics) -> float:
    """The heuristic ranking score (offers.heuristic_score) of one product."""
    return offers.heuristic_score(item.confidence, item.recency_weight)


def _offer(
    item: analysis_pb2.ItemStatistics,
    judgement: Judgement,
    product: product_pb2.Product,
    insight: offer_pb2.Insight | None,
    similar: Sequence[product_pb2.ProductMatch],
    *,
    position: int,
    discount_percent: float,
    predicted_interval_days: float,
    terms: offers.OfferTerms,
    row: int,
) -> offer_pb2.Offer:
    """The message of offer `row` of `terms`."""
    return offer_pb2.Offer(
        product=product,
        rank=position,
        score=judgement.score,
        confidence=judgement.confidence,
        predicted_interval_days=predicted_interval_days,
        delivery_interval_days=int(terms.delivery_interval_days[row]),
        quantity_per_delivery=float(terms.quantity_per_delivery[row]),
        discount_percent=discount_percent,
        savings_per_delivery_usd=float(terms.savings.per_delivery[row]),
        monthly_savings_usd=float(terms.savings.monthly[row]),
        yearly_savings_usd=float(terms.savings.yearly[row]),
        first_delivery_date=dates.epoch_day_to_proto(int(terms.first_delivery_epoch_day[row])),
        reason=(insight.reasoning if insight else "") or rhythm_sentence(item),
        related_products=(insight.related_products if insight else close_matches(product, similar)),
        insight_source=insight.source if insight else offer_pb2.INSIGHT_SOURCE_UNSPECIFIED,
        cold_start=bool(terms.cold_start[row]),
        interval_snap_error_days=float(terms.interval_snap_error_days[row]),
    )
