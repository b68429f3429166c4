"""Each step alone on its own server (port 0), called through its real stub."""

from __future__ import annotations

import math
from pathlib import Path

import grpc
import pytest
from pantree.domain.v1 import analysis_pb2, offer_pb2, product_pb2
from pantree.frequency.v1 import frequency_service_pb2 as frequency_pb
from pantree.frequency.v1.frequency_service_pb2_grpc import FrequencyServiceStub
from pantree.insights.v1 import insights_service_pb2 as insights_pb
from pantree.insights.v1.insights_service_pb2_grpc import InsightsServiceStub
from pantree.recommendation.v1 import recommendation_service_pb2 as recommendation_pb
from pantree.recommendation.v1.recommendation_service_pb2_grpc import RecommendationServiceStub
from pantree.simulation.v1 import simulation_service_pb2 as simulation_pb
from pantree.simulation.v1.simulation_service_pb2_grpc import SimulationServiceStub
from pantree.vectors.v1 import vectors_service_pb2 as vectors_pb
from pantree.vectors.v1.vectors_service_pb2_grpc import VectorServiceStub

from pantree_common.descriptors import SERVICES
from pantree_common.domain import catalog
from pantree_common.errors import bad_request_violations
from tests.histories import rhythmic_history
from tests.service.conftest import Mesh, start_mesh, stop_mesh


async def alone(tmp_path: Path, step: str) -> Mesh:
    mesh = await start_mesh(tmp_path, steps=[step])
    assert [s.name for s in mesh.server.services] == [SERVICES[step].full_name]
    return mesh


async def test_simulation_streams_the_months_it_was_asked_for(tmp_path: Path) -> None:
    mesh = await alone(tmp_path, "simulation")
    try:
        stub = SimulationServiceStub(mesh.channel)
        request = simulation_pb.SimulateHistoryRequest(
            archetype="single_professional",
            months=3,
            random_seed=1,
            seed_items=[product_pb2.SeedItem(name="coffee")],
        )
        months = [r.month async for r in stub.SimulateHistory(request, timeout=10)]
        archetypes = await stub.ListArchetypes(simulation_pb.ListArchetypesRequest(), timeout=5)
    finally:
        await stop_mesh(mesh)
    assert [m.month_index for m in months] == [1, 2, 3]
    assert "Ground Coffee Medium Roast 12 oz" in {p.product_name for p in months[0].purchases}
    assert len(archetypes.archetypes) == 4


async def test_frequency_analyses_one_and_many_histories(tmp_path: Path) -> None:
    mesh = await alone(tmp_path, "frequency")
    try:
        stub = FrequencyServiceStub(mesh.channel)
        one = await stub.AnalyzeHistory(
            frequency_pb.AnalyzeHistoryRequest(history=rhythmic_history()), timeout=5
        )
        many = await stub.BatchAnalyzeHistories(
            frequency_pb.BatchAnalyzeHistoriesRequest(
                histories=[rhythmic_history("a"), rhythmic_history("b", weeks=10)]
            ),
            timeout=5,
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.AnalyzeHistory(
                frequency_pb.AnalyzeHistoryRequest(history=rhythmic_history(), min_purchases=1),
                timeout=5,
            )
    finally:
        await stop_mesh(mesh)
    assert one.analysis.items[0].product_id == "p-1001"
    assert one.analysis.items[0].median_interval_days == 7.0
    assert [a.customer_id for a in many.analyses] == ["a", "b"]
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in bad_request_violations(caught.value)] == ["min_purchases"]


async def test_vectors_index_search_and_profile(tmp_path: Path) -> None:
    rye = product_pb2.Product(
        product_id="x-1",
        name="Rye Bread Loaf",
        category="bakery",
        department="grocery",
        unit_price_usd=3.25,
    )
    mesh = await alone(tmp_path, "vectors")
    try:
        stub = VectorServiceStub(mesh.channel)
        indexed = await stub.IndexProducts(
            vectors_pb.IndexProductsRequest(products=[rye]),
            timeout=10,
        )
        found = await stub.SearchSimilarProducts(
            vectors_pb.SearchSimilarProductsRequest(query_texts=["rye bread"], top_k=3),
            timeout=10,
        )
        profile = await stub.UpsertCustomerProfile(
            vectors_pb.UpsertCustomerProfileRequest(history=rhythmic_history()), timeout=10
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.SearchSimilarProducts(
                vectors_pb.SearchSimilarProductsRequest(query_texts=["milk"], top_k=51),
                timeout=10,
            )
        deep = await stub.SearchSimilarProducts(
            vectors_pb.SearchSimilarProductsRequest(query_texts=["milk"], top_k=50), timeout=10
        )
        popular = await stub.SearchSimilarProducts(
            vectors_pb.SearchSimilarProductsRequest(
                query_texts=["milk"], top_k=2, popularity_weight=0.05
            ),
            timeout=10,
        )
        with pytest.raises(grpc.aio.AioRpcError) as bad_weight:
            await stub.SearchSimilarProducts(
                vectors_pb.SearchSimilarProductsRequest(
                    query_texts=["milk"], popularity_weight=float("nan")
                ),
                timeout=10,
            )
    finally:
        await stop_mesh(mesh)
    rank = catalog.active_catalog().rank
    unranked = len(rank)

    def score(match: product_pb2.ProductMatch) -> float:
        position = rank.get(match.product.product_id, unranked)
        return match.similarity - 0.05 * math.log10(position + 1)

    expected = sorted(deep.results[0].matches, key=lambda m: -score(m))[:2]
    assert list(popular.results[0].matches) == expected
    assert bad_weight.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in bad_request_violations(bad_weight.value)] == ["popularity_weight"]
    assert indexed.indexed_count == 1
    assert indexed.total_count > 80, "the built-in catalog is indexed at start-up"
    assert found.results[0].query_text == "rye bread"
    assert len(found.results[0].matches) == 3
    assert found.results[0].matches[0].product == rye  # every field of the stored product
    assert profile.customer_id == "shopper-1"
    assert profile.product_count == 4
    assert [v.field for v in bad_request_violations(caught.value)] == ["top_k"]


async def test_insights_explain_each_candidate_in_order(tmp_path: Path) -> None:
    mesh = await alone(tmp_path, "insights")
    try:
        candidates = [
            insights_pb.Candidate(
                product=product_pb2.Product(product_id=pid, name=name, category="dairy"),
                statistics=analysis_pb2.ItemStatistics(
                    product_id=pid, purchase_days=5, mean_interval_days=7, median_interval_days=7
                ),
            )
            for pid, name in (("a", "Milk"), ("b", "Yogurt"))
        ]
        response = await InsightsServiceStub(mesh.channel).EnrichCandidates(
            insights_pb.EnrichCandidatesRequest(candidates=candidates), timeout=5
        )
    finally:
        await stop_mesh(mesh)
    assert [i.product_id for i in response.insights] == ["a", "b"]
    assert all(i.source == offer_pb2.INSIGHT_SOURCE_FALLBACK for i in response.insights)
    assert response.insights[0].suggested_interval_days == 7.0


async def test_recommendation_rejects_an_analysis_of_unknown_products(tmp_path: Path) -> None:
    mesh = await alone(tmp_path, "recommendation")
    try:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await RecommendationServiceStub(mesh.channel).RankCandidates(
                recommendation_pb.RankCandidatesRequest(
                    analysis=analysis_pb2.HistoryAnalysis(
                        items=[analysis_pb2.ItemStatistics(product_id="ghost")]
                    )
                ),
                timeout=5,
            )
    finally:
        await stop_mesh(mesh)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in bad_request_violations(caught.value)] == [
        "analysis.items[0].product_id"
    ]
