"""The orchestrator's logic: compose the steps, only through their gRPC stubs."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import AsyncGenerator, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import grpc
from pantree.domain.v1 import analysis_pb2, history_pb2, offer_pb2, product_pb2
from pantree.frequency.v1 import frequency_service_pb2 as frequency_pb
from pantree.insights.v1 import insights_service_pb2 as insights_pb
from pantree.orchestrator.v1 import orchestrator_service_pb2 as pb
from pantree.recommendation.v1 import recommendation_service_pb2 as recommendation_pb
from pantree.simulation.v1 import simulation_service_pb2 as simulation_pb
from pantree.vectors.v1 import vectors_service_pb2 as vectors_pb

from pantree_common import context
from pantree_common.domain import catalog
from pantree_common.domain.dates import from_proto, to_epoch_day, to_proto
from pantree_common.domain.history import history_from_months
from pantree_common.domain.seed import SeedItem, seed_spec_of
from pantree_common.errors import Collector, UpstreamError
from pantree_common.metrics import SKIPPED_STEPS
from services.orchestrator.config import OrchestratorConfig

if TYPE_CHECKING:
    from pantree.frequency.v1.frequency_service_pb2_grpc import FrequencyServiceAsyncStub
    from pantree.insights.v1.insights_service_pb2_grpc import InsightsServiceAsyncStub
    from pantree.recommendation.v1.recommendation_service_pb2_grpc import (
        RecommendationServiceAsyncStub,
    )
    from pantree.simulation.v1.simulation_service_pb2_grpc import SimulationServiceAsyncStub
    from pantree.vectors.v1.vectors_service_pb2_grpc import VectorServiceAsyncStub

log = logging.getLogger("pantree.orchestrator")

Stage = pb.ProcessStage
OPTIONAL_SHARE = 0.5
"""Most of the time a call has left that an optional step (similar products, insights) may
take: ranking keeps the rest."""
SEED_POPULARITY_WEIGHT = 0.05
"""Similarity a seed name's product gives up per tenfold rank in the catalog (most rebought
first): the 10th most rebought product beats the 10,000th unless it reads 0.15 less alike."""
FIRST_MONTH_PRIORITY_S = 0.05
"""Longest a stream past its simulation waits for other streams to send their first month."""
# A candidate product's statistics with the products most similar to it.
Neighbours = tuple[analysis_pb2.ItemStatistics, Sequence[product_pb2.ProductMatch]]


@dataclass(frozen=True)
class Steps:
    """Async stubs of the five pipeline steps."""

    simulation: SimulationServiceAsyncStub
    vectors: VectorServiceAsyncStub
    frequency: FrequencyServiceAsyncStub
    insights: InsightsServiceAsyncStub
    recommendation: RecommendationServiceAsyncStub


@contextmanager
def step_errors(step: str) -> Iterator[None]:
    """Report a failed step call under the step's name, keeping its status code."""
    try:
        yield
    except grpc.aio.AioRpcError as exc:
        raise UpstreamError.from_rpc_error(step, exc) from None


def optional_timeout(limit_s: float | None = None) -> float | None:
    """The time an optional step may take: OPTIONAL_SHARE of what the call has left, and at
    most `limit_s`; None (the channel's default) when neither bounds it."""
    remaining = context.remaining_seconds()
    share = None if remaining is None else remaining * OPTIONAL_SHARE
    bounds = [t for t in (limit_s, share) if t is not None]
    return min(bounds) if bounds else None


def skipped(step: str, without: str, error: grpc.aio.AioRpcError) -> None:
    """Count and log an optional step call the orchestrator goes on without."""
    SKIPPED_STEPS.labels(step, error.code().name).inc()
    log.warning(
        f"{without} (the {step} step failed or overran its time): ranking without them",
        extra={"code": error.code().name, "details": error.details()},
    )


def bound_deadline(default_s: float) -> None:
    """Give the current call a deadline when its caller set none, so no step call is unbounded."""
    if context.deadline.get() is None:
        context.deadline.set(time.monotonic() + default_s)


def related(similar: Sequence[Neighbours]) -> list[product_pb2.RelatedProducts]:
    """Each candidate's similar products, for offers that have no insight."""
    return [
        product_pb2.RelatedProducts(product_id=item.product_id, matches=matches)
        for item, matches in similar
    ]


def _progress(
    stage: pb.ProcessStage.ValueType, message: str, percent: int
) -> pb.ProcessSeedResponse:
    return pb.ProcessSeedResponse(
        progress=pb.Progress(stage=stage, message=message, percent_complete=percent)
    )


class FirstMonths:
    """The streams that have not sent their first month yet. A shopper watching ProcessSeed
    waits for that month before anything else, so a stream done simulating lets them go first
    before its analysis, search, insights and ranking, for at most FIRST_MONTH_PRIORITY_S: the
    event loop would otherwise take every stream's work in arrival order."""

    def __init__(self) -> None:
        self._pending = 0
        self._none_pending = asyncio.Event()
        self._none_pending.set()

    @contextmanager
    def pending(self) -> Iterator[Callable[[], None]]:
        """Count this stream until the returned callback (or the block's end) says it sent its
        first month."""
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self._pending -= 1
                if not self._pending:
                    self._none_pending.set()

        self._pending += 1
        self._none_pending.clear()
        try:
            yield release
        finally:
            release()

    async def let_them_go_first(self) -> None:
        if self._pending:
            try:
                await asyncio.wait_for(self._none_pending.wait(), FIRST_MONTH_PRIORITY_S)
            except TimeoutError:
                return


class Pipeline:
    def __init__(
        self, steps: Steps, config: OrchestratorConfig, today: Callable[[], dt.date]
    ) -> None:
        self._steps = steps
        self._config = config
        self._today = today
        self._first_months = FirstMonths()

    async def archetypes(self) -> list[simulation_pb.Archetype]:
        with step_errors("simulation"):
            response = await self._steps.simulation.ListArchetypes(
                simulation_pb.ListArchetypesRequest()
            )
        return list(response.archetypes)

    async def process_seed(
        self, request: pb.ProcessSeedRequest
    ) -> AsyncGenerator[pb.ProcessSeedResponse, None]:
        """Stream progress, each month as the simulation yields it, the analysis, the offers and
        a summary."""
        started = time.perf_counter()
        bound_deadline(self._config.process_seed_timeout_s)
        spec = seed_spec_of(request, self._today())
        customer_id = spec.customer_id or f"seed-{spec.random_seed}"
        months: list[history_pb2.SimulatedMonth] = []
        with self._first_months.pending() as first_month_sent:
            seed_items, resolution = await self._resolve_seeds(spec.seed_items)
            yield pb.ProcessSeedResponse(resolution=resolution)
            yield _progress(Stage.PROCESS_STAGE_SIMULATING, f"Simulating {spec.months} months", 0)
            simulation = self._steps.simulation.SimulateHistory(
                simulation_pb.SimulateHistoryRequest(
                    customer_id=customer_id,
                    archetype=request.archetype,
                    seed_items=seed_items,
                    months=spec.months,
                    random_seed=spec.random_seed,
                    start_date=to_proto(spec.start_date),
                )
            )
            with step_errors("simulation"):
                async for response in simulation:
                    months.append(response.month)
                    yield pb.ProcessSeedResponse(month=response.month)
                    first_month_sent()
        await self._first_months.let_them_go_first()
        history = history_from_months(customer_id, months, catalog.products_by_id()).to_proto()
        as_of = to_epoch_day(from_proto(months[-1].end_date, "end_date"))

        # The profile needs only the history: store it while the rest of the pipeline runs.
        profile = asyncio.ensure_future(self._store_profile(history))
        try:
            yield _progress(Stage.PROCESS_STAGE_ANALYZING, "Measuring purchase rhythms", 60)
            analysis = await self._analyze(history, as_of)
            yield pb.ProcessSeedResponse(analysis=analysis)
            yield _progress(Stage.PROCESS_STAGE_EMBEDDING, "Searching similar products", 70)
            similar = await self._similar(history, analysis)
            yield _progress(Stage.PROCESS_STAGE_ENRICHING, "Explaining the candidates", 80)
            insights = await self._insights(history, similar, request.archetype)
            yield _progress(Stage.PROCESS_STAGE_RANKING, "Ranking subscription offers", 90)
            ranked = await self._rank(
                history, analysis, insights, request.archetype, request.max_offers, related(similar)
            )
            await profile
        finally:
            if not profile.done():
                profile.cancel()
            elif not profile.cancelled():
                profile.exception()  # already raised above or superseded: mark it retrieved
        yield pb.ProcessSeedResponse(
            recommendations=pb.Recommendations(offers=ranked.offers, scored_by=ranked.scored_by)
        )
        yield pb.ProcessSeedResponse(
            summary=pb.Summary(
                customer_id=customer_id,
                month_count=len(months),
                purchase_count=sum(len(m.purchases) for m in months),
                total_spend_usd=round(sum(m.total_spend_usd for m in months), 2),
                offer_count=len(ranked.offers),
                yearly_savings_usd=round(sum(o.yearly_savings_usd for o in ranked.offers), 2),
                elapsed_ms=round((time.perf_counter() - started) * 1000, 3),
            )
        )

    async def _store_profile(self, history: history_pb2.PurchaseHistory) -> None:
        with step_errors("vectors"):
            await self._steps.vectors.UpsertCustomerProfile(
                vectors_pb.UpsertCustomerProfileRequest(history=history)
            )

    async def recommend(self, request: pb.RecommendRequest) -> pb.RecommendResponse:
        """Offers for a given history: frequency, vectors, recommendation. The hot path leaves
        out the insights step; its offers show similar products and rhythm-based reasons."""
        bound_deadline(self._config.recommend_timeout_s)
        history = request.history
        analysis = await self._analyze(history, request.as_of_epoch_day)
        similar = await self._similar(history, analysis)
        ranked = await self._rank(
            history,
            analysis,
            (),
            request.archetype,
            request.max_offers,
            related(similar),
            excluded_product_ids=request.excluded_product_ids,
            active_subscriptions=request.active_subscriptions,
        )
        return pb.RecommendResponse(
            offers=ranked.offers,
            scored_by=ranked.scored_by,
            analysis=analysis if request.include_analysis else None,
        )

    async def _analyze(
        self, history: history_pb2.PurchaseHistory, as_of_epoch_day: int
    ) -> analysis_pb2.HistoryAnalysis:
        with step_errors("frequency"):
            response = await self._steps.frequency.AnalyzeHistory(
                frequency_pb.AnalyzeHistoryRequest(history=history, as_of_epoch_day=as_of_epoch_day)
            )
        return response.analysis

    def _candidates(
        self, analysis: analysis_pb2.HistoryAnalysis
    ) -> list[analysis_pb2.ItemStatistics]:
        """The products worth enriching: rhythmic ones, best first, bounded."""
        rhythmic = [item for item in analysis.items if item.meets_minimum_purchases]
        return rhythmic[: self._config.enriched_candidates]

    async def _resolve_seeds(
        self, seeds: Sequence[SeedItem]
    ) -> tuple[list[product_pb2.SeedItem], pb.SeedResolution]:
        """Each seed item's catalog product: named by id, or found by one batched similarity
        search over every name, popularity breaking near ties (SEED_POPULARITY_WEIGHT: a shopper
        typing "milk" means the milk households buy every week). Every item
        that matches nothing well enough is reported in one INVALID_ARGUMENT."""
        active = catalog.active_catalog()
        errors = Collector()
        matches: dict[int, pb.SeedMatch] = {}
        for position, seed in enumerate(seeds):
            if not seed.product_id:
                continue
            product = active.lookup(errors, seed.product_id, f"seed_items[{position}].product_id")
            if product is not None:
                matches[position] = pb.SeedMatch(
                    name=seed.name, product=product.to_proto(), similarity=1.0
                )
        by_name = [position for position, seed in enumerate(seeds) if not seed.product_id]
        if by_name:
            with step_errors("vectors"):
                response = await self._steps.vectors.SearchSimilarProducts(
                    vectors_pb.SearchSimilarProductsRequest(
                        query_texts=[seeds[position].name for position in by_name],
                        top_k=1,
                        popularity_weight=SEED_POPULARITY_WEIGHT,
                    )
                )
            for position, result in zip(by_name, response.results, strict=True):
                best = result.matches[0] if result.matches else None
                least = self._config.seed_min_similarity
                if best is None or best.similarity < least:
                    closest = (
                        f"; the closest, {best.product.name[:64]!r}, scores {best.similarity:.2f}"
                        if best
                        else ""
                    )
                    errors.add(
                        f"seed_items[{position}].name",
                        f"no catalog product matches {seeds[position].name[:64]!r} with a "
                        f"similarity of at least {least}{closest}",
                    )
                else:
                    matches[position] = pb.SeedMatch(
                        name=seeds[position].name, product=best.product, similarity=best.similarity
                    )
        errors.raise_if_any()
        resolution = pb.SeedResolution(matches=[matches[p] for p in sorted(matches)])
        items = [
            product_pb2.SeedItem(
                name=seed.name,
                quantity=seed.quantity,
                unit_price_usd=seed.unit_price_usd,
                product_id=matches[position].product.product_id,
            )
            for position, seed in enumerate(seeds)
        ]
        return items, resolution

    async def _similar(
        self, history: history_pb2.PurchaseHistory, analysis: analysis_pb2.HistoryAnalysis
    ) -> list[Neighbours]:
        """The candidates with their similar products, best candidate first, from one batched
        search; without similar products when the vectors step fails or overruns its share of
        the time (OPTIONAL_SHARE): they are an extra, the offers are not."""
        candidates = self._candidates(analysis)
        if not candidates:
            return []
        names = {p.product_id: p.name for p in history.products}
        try:
            response = await self._steps.vectors.SearchSimilarProducts(
                vectors_pb.SearchSimilarProductsRequest(
                    query_texts=[names[item.product_id] for item in candidates],
                    top_k=self._config.related_top_k,
                    exclude_product_ids=list(names),
                ),
                timeout=optional_timeout(),
            )
        except grpc.aio.AioRpcError as exc:
            skipped("vectors", "no similar products", exc)
            return [(item, []) for item in candidates]
        return list(zip(candidates, (result.matches for result in response.results), strict=True))

    async def _insights(
        self,
        history: history_pb2.PurchaseHistory,
        similar: list[Neighbours],
        archetype: str,
    ) -> Sequence[offer_pb2.Insight]:
        """Insights for the candidates, or none when the insights step fails or overruns its
        time (insights_timeout_s, OPTIONAL_SHARE): the offers then carry rhythm reasons and
        similar products."""
        if not similar:
            return []
        products = {p.product_id: p for p in history.products}
        try:
            response = await self._steps.insights.EnrichCandidates(
                insights_pb.EnrichCandidatesRequest(
                    candidates=[
                        insights_pb.Candidate(
                            product=products[item.product_id],
                            statistics=item,
                            similar_products=matches,
                        )
                        for item, matches in similar
                    ],
                    archetype=archetype,
                ),
                timeout=optional_timeout(self._config.insights_timeout_s),
            )
        except grpc.aio.AioRpcError as exc:
            skipped("insights", "no insights", exc)
            return []
        return response.insights

    async def _rank(
        self,
        history: history_pb2.PurchaseHistory,
        analysis: analysis_pb2.HistoryAnalysis,
        insights: Sequence[offer_pb2.Insight],
        archetype: str,
        max_offers: int,
        related: Sequence[product_pb2.RelatedProducts] = (),
        *,
        excluded_product_ids: Sequence[str] = (),
        active_subscriptions: int = 0,
    ) -> recommendation_pb.RankCandidatesResponse:
        with step_errors("recommendation"):
            return await self._steps.recommendation.RankCandidates(
                recommendation_pb.RankCandidatesRequest(
                    analysis=analysis,
                    products=history.products,
                    insights=insights,
                    archetype=archetype,
                    max_offers=max_offers,
                    related_products=related,
                    excluded_product_ids=excluded_product_ids,
                    active_subscriptions=active_subscriptions,
                )
            )
