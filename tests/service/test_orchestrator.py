"""The orchestrator over real gRPC: stream order, determinism, Recommend, errors, health."""

from __future__ import annotations

import asyncio
import io
import json
import math
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2
from pantree.domain.v1 import offer_pb2, product_pb2
from pantree.orchestrator.v1 import orchestrator_service_pb2 as pb

from pantree_common import logging as pantree_logging
from pantree_common.domain.dates import today_epoch_day
from pantree_common.domain.seed import SeedSpec
from pantree_common.errors import bad_request_violations
from pantree_common.server import Service, create_server
from services.mesh import STEPS, build_services, create_mesh_server
from services.simulation.servicer import SimulationServicer
from services.simulation.simulator import Simulator
from tests.histories import rhythmic_history
from tests.service.conftest import TODAY, Mesh, mesh_config, seed_request, start_mesh, stop_mesh

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def kinds(events: list[pb.ProcessSeedResponse]) -> list[str]:
    return [str(e.WhichOneof("event")) for e in events]


async def collect_within(
    mesh: Mesh, request: pb.ProcessSeedRequest, deadline_s: float
) -> list[pb.ProcessSeedResponse]:
    return [event async for event in mesh.orchestrator.ProcessSeed(request, timeout=deadline_s)]


async def collect(mesh: Mesh, request: pb.ProcessSeedRequest) -> list[pb.ProcessSeedResponse]:
    return await collect_within(mesh, request, 30)


async def test_process_seed_streams_months_in_order_then_analysis_offers_summary(
    mesh: Mesh,
) -> None:
    events = await collect(mesh, seed_request(months=6))
    content = [k for k in kinds(events) if k != "progress"]
    assert content == ["resolution"] + ["month"] * 6 + ["analysis", "recommendations", "summary"]
    matches = events[0].resolution.matches
    assert [m.name for m in matches] == ["milk", "eggs", "bread", "coffee"]
    assert [m.product.product_id for m in matches] == ["p-1001", "p-1101", "p-1202", "p-2002"]
    assert all(0.5 <= m.similarity <= 1 for m in matches)
    months = [e.month for e in events if e.HasField("month")]
    assert [m.month_index for m in months] == [1, 2, 3, 4, 5, 6]
    assert all(m.month_count == 6 for m in months)
    assert (months[0].start_date.year, months[0].start_date.month) == (2026, 3)
    assert kinds(events)[:2] == ["resolution", "progress"]
    recommendations = next(e.recommendations for e in events if e.HasField("recommendations"))
    assert recommendations.scored_by == offer_pb2.SCORING_PATH_HEURISTIC
    assert recommendations.offers, "six months of a busy family must yield offers"
    assert [o.rank for o in recommendations.offers] == list(
        range(1, len(recommendations.offers) + 1)
    )
    for offer in recommendations.offers:
        assert 0 < offer.confidence <= 100
        assert offer.delivery_interval_days in (7, 14, 21, 28, 42, 56, 90, 120, 180)
        assert offer.yearly_savings_usd > 0
        assert offer.reason
    summary = events[-1].summary
    assert summary.month_count == 6
    assert summary.purchase_count == sum(len(m.purchases) for m in months)
    assert summary.offer_count == len(recommendations.offers)
    assert summary.customer_id == "shopper-1"


async def test_unresolvable_seed_items_are_refused_together_before_simulating(mesh: Mesh) -> None:
    items = [
        product_pb2.SeedItem(name="milk"),
        product_pb2.SeedItem(name="qwzx vbnm"),
        product_pb2.SeedItem(name="eggs", product_id="no-such-product"),
        product_pb2.SeedItem(name="anything", product_id="p-2303"),
    ]
    received: list[str] = []
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for event in mesh.orchestrator.ProcessSeed(seed_request(seed_items=items)):
            received.append(str(event.WhichOneof("event")))

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    violations = {v.field: v.description for v in bad_request_violations(caught.value)}
    assert set(violations) == {"seed_items[1].name", "seed_items[2].product_id"}
    assert "'qwzx vbnm'" in violations["seed_items[1].name"]
    assert "similarity of at least 0.5" in violations["seed_items[1].name"]
    assert received == []


async def test_seed_items_named_by_id_resolve_without_a_search(mesh: Mesh) -> None:
    items = [product_pb2.SeedItem(name="the blue one", product_id="p-2303")]
    events = await collect(mesh, seed_request(seed_items=items, months=2))

    [match] = events[0].resolution.matches
    assert (match.name, match.product.product_id, match.similarity) == ("the blue one", "p-2303", 1)
    first = events[2].month
    assert "p-2303" in {p.product_id for p in first.purchases}


async def test_each_month_arrives_before_the_next_is_simulated(tmp_path: Path) -> None:
    produced_at: list[float] = []

    class RecordingSimulator(Simulator):
        def months(self, spec: SeedSpec) -> Iterator[object]:  # type: ignore[override]
            for month in super().months(spec):
                produced_at.append(time.monotonic())
                yield month

    config = mesh_config(tmp_path, PANTREE_SIMULATION_MONTH_DELAY_MS="60")

    def build(address: str) -> list[Service]:
        services = build_services(STEPS, config, address, lambda: TODAY)
        services[0] = replace(
            services[0],
            servicer=SimulationServicer(RecordingSimulator(), config.simulation, lambda: TODAY),
        )
        return services

    mesh = await start_mesh(tmp_path, server=create_server(config.server, build))
    try:
        arrived_at: list[float] = []
        async for event in mesh.orchestrator.ProcessSeed(seed_request(months=6), timeout=30):
            if event.HasField("month"):
                arrived_at.append(time.monotonic())
    finally:
        await stop_mesh(mesh)
    assert len(produced_at) == len(arrived_at) == 6
    for month in range(5):
        assert arrived_at[month] < produced_at[month + 1], f"month {month + 1} was held back"


def _without_timing(events: list[pb.ProcessSeedResponse]) -> list[bytes]:
    for event in events:
        if event.HasField("summary"):
            event.summary.elapsed_ms = 0
    return [e.SerializeToString(deterministic=True) for e in events]


async def test_same_seed_same_stream_and_different_seed_different_history(mesh: Mesh) -> None:
    first = await collect(mesh, seed_request(random_seed=5))
    again = await collect(mesh, seed_request(random_seed=5))
    other = await collect(mesh, seed_request(random_seed=6))
    assert _without_timing(first) == _without_timing(again)
    months = lambda events: [e.month for e in events if e.HasField("month")]  # noqa: E731
    assert months(first) != months(other)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"archetype": "pirate"}, "archetype"),
        ({"seed_items": []}, "seed_items"),
        (
            {"seed_items": [product_pb2.SeedItem(name=f"item {i}") for i in range(201)]},
            "seed_items",
        ),
        ({"seed_items": [product_pb2.SeedItem(name="   ")]}, "seed_items[0].name"),
        ({"months": 25}, "months"),
        ({"months": -1}, "months"),
        ({"seed_items": [product_pb2.SeedItem(name="milk", quantity=0)]}, "seed_items[0].quantity"),
        (
            {"seed_items": [product_pb2.SeedItem(name="milk", quantity=-2)]},
            "seed_items[0].quantity",
        ),
        (
            {"seed_items": [product_pb2.SeedItem(name="milk", unit_price_usd=-1)]},
            "seed_items[0].unit_price_usd",
        ),
        (
            {"seed_items": [product_pb2.SeedItem(name="milk", unit_price_usd=math.nan)]},
            "seed_items[0].unit_price_usd",
        ),
        (
            {"seed_items": [product_pb2.SeedItem(name="milk", unit_price_usd=math.inf)]},
            "seed_items[0].unit_price_usd",
        ),
    ],
)
async def test_bad_seed_is_invalid_argument_naming_the_field(
    mesh: Mesh, overrides: dict[str, object], field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await collect(mesh, seed_request(**overrides))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in [v.field for v in bad_request_violations(caught.value)]
    assert await mesh.health_of("") == SERVING


def _history_with(**changes: object) -> pb.RecommendRequest:
    history = rhythmic_history()
    for name, value in changes.items():
        column = getattr(history, name)
        if isinstance(value, tuple):
            position, item = value
            column[position] = item
        else:
            del column[:]
            column.extend(value)  # type: ignore[arg-type]
    return pb.RecommendRequest(history=history)


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (
            _history_with(purchase_epoch_days=(-1, today_epoch_day() + 30)),
            "history.purchase_epoch_days",
        ),
        (_history_with(purchase_epoch_days=(3, 1)), "history.purchase_epoch_days"),
        (_history_with(quantities=(0, 0.0)), "history.quantities"),
        (_history_with(quantities=(1, -3.0)), "history.quantities"),
        (
            _history_with(unit_prices_usd=[math.nan] * len(rhythmic_history().product_indexes)),
            "history.unit_prices_usd",
        ),
        (
            _history_with(unit_prices_usd=[-1.0] * len(rhythmic_history().product_indexes)),
            "history.unit_prices_usd",
        ),
        (_history_with(product_indexes=(0, 99)), "history.product_indexes"),
        (
            _history_with(
                product_indexes=[0] * 10_001, purchase_epoch_days=[19_000] * 10_001, quantities=[]
            ),
            "history.product_indexes",
        ),
        (pb.RecommendRequest(history=rhythmic_history(), max_offers=500), "max_offers"),
        (pb.RecommendRequest(history=rhythmic_history(), archetype="pirate"), "archetype"),
        (pb.RecommendRequest(), "history.product_indexes"),
    ],
)
async def test_bad_history_is_invalid_argument_naming_the_field(
    mesh: Mesh, request_: pb.RecommendRequest, field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await mesh.orchestrator.Recommend(request_, timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
    assert field in [v.field for v in bad_request_violations(caught.value)]
    assert await mesh.health_of("") == SERVING


async def test_blank_product_name_in_history_is_rejected(mesh: Mesh) -> None:
    request = pb.RecommendRequest(history=rhythmic_history())
    request.history.products[1].name = " "
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await mesh.orchestrator.Recommend(request, timeout=10)
    assert "history.products[1].name" in [v.field for v in bad_request_violations(caught.value)]


async def test_message_over_the_size_limit_is_resource_exhausted(mesh: Mesh) -> None:
    request = pb.RecommendRequest(history=rhythmic_history())
    request.history.customer_id = "x" * (5 * 1024 * 1024)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await mesh.orchestrator.Recommend(request, timeout=10)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert await mesh.health_of("") == SERVING


async def test_recommend_ranks_the_rhythmic_items(mesh: Mesh) -> None:
    response = await mesh.orchestrator.Recommend(
        pb.RecommendRequest(history=rhythmic_history(), include_analysis=True), timeout=10
    )
    assert response.scored_by == offer_pb2.SCORING_PATH_HEURISTIC
    offered = [o.product.product_id for o in response.offers]
    assert offered[0] == "p-1001", "weekly milk is the most regular purchase"
    assert "p-1805" not in offered, "chocolate bought twice is no rhythm"
    milk = response.offers[0]
    related = [m.product.product_id for m in milk.related_products]
    assert related, "the vectors step found products similar to milk"
    assert not set(related) & {p.product_id for p in rhythmic_history().products}
    assert milk.delivery_interval_days == 7
    assert milk.predicted_interval_days == pytest.approx(7.0)
    assert response.analysis.items[0].product_id == "p-1001"


async def test_recommend_honours_exclusions_and_active_subscriptions(mesh: Mesh) -> None:
    plain = await mesh.orchestrator.Recommend(
        pb.RecommendRequest(history=rhythmic_history()), timeout=10
    )
    ruled = await mesh.orchestrator.Recommend(
        pb.RecommendRequest(
            history=rhythmic_history(), excluded_product_ids=["p-1001"], active_subscriptions=9
        ),
        timeout=10,
    )
    offered = [o.product.product_id for o in plain.offers]
    assert offered[0] == "p-1001"
    assert [o.product.product_id for o in ruled.offers] == offered[1:]
    assert {o.discount_percent for o in ruled.offers} == {15.0}
    for offer in ruled.offers:
        snapped = offer.delivery_interval_days - offer.predicted_interval_days
        assert offer.interval_snap_error_days == pytest.approx(snapped)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await mesh.orchestrator.Recommend(
            pb.RecommendRequest(history=rhythmic_history(), excluded_product_ids=[""]), timeout=10
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "excluded_product_ids[0]" in (caught.value.details() or "")


async def test_health_reports_every_step_serving(mesh: Mesh) -> None:
    for service in mesh.server.services:
        assert await mesh.health_of(service.name) == SERVING
    assert len(mesh.server.services) == len(STEPS)


async def test_archetypes_and_config(mesh: Mesh) -> None:
    archetypes = await mesh.orchestrator.ListArchetypes(pb.ListArchetypesRequest(), timeout=5)
    assert {a.archetype_id for a in archetypes.archetypes} == {
        "health_conscious",
        "busy_family",
        "budget_conscious",
        "single_professional",
    }
    config = await mesh.orchestrator.GetConfig(pb.GetConfigRequest(), timeout=5)
    entries = {e.env_var: e.value for e in config.entries}
    assert entries["PORT"] == "0"
    assert "PANTREE_MILVUS_TOKEN" not in entries
    assert [e.env_var for e in config.entries] == sorted(entries)


async def test_a_step_that_is_down_ends_the_stream_with_unavailable(
    tmp_path: Path, free_port: int
) -> None:
    steps = [s for s in STEPS if s != "frequency"]
    config = mesh_config(tmp_path, FREQUENCY_SERVICE_ADDR=f"127.0.0.1:{free_port}")
    mesh = await start_mesh(tmp_path, server=create_mesh_server(steps, config, lambda: TODAY))
    try:
        received: list[str] = []
        started = time.monotonic()
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async for event in mesh.orchestrator.ProcessSeed(seed_request(months=3), timeout=10):
                received.append(str(event.WhichOneof("event")))
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "frequency" in (caught.value.details() or "")
        assert received.count("month") == 3
        assert time.monotonic() - started < 5
        started = time.monotonic()
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await mesh.orchestrator.Recommend(
                pb.RecommendRequest(history=rhythmic_history()), timeout=2
            )
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert time.monotonic() - started < 2
    finally:
        await stop_mesh(mesh)


async def test_stop_drains_an_in_flight_stream(tmp_path: Path) -> None:
    mesh = await start_mesh(tmp_path, PANTREE_SIMULATION_MONTH_DELAY_MS="100")
    try:
        call = mesh.orchestrator.ProcessSeed(seed_request(months=4), timeout=30)
        first = await call.read()
        assert first.HasField("resolution")
        stopping = asyncio.create_task(mesh.server.stop(grace=10))
        await asyncio.sleep(0.05)  # the stream has 3 more months of 100 ms to go
        events = [first, await call.read()]
        assert await mesh.health_of("") == NOT_SERVING, "draining servers leave load balancers"
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await mesh.orchestrator.ListArchetypes(pb.ListArchetypesRequest(), timeout=5)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        while (event := await call.read()) is not grpc.aio.EOF:
            events.append(event)
        await stopping
        assert await call.code() == grpc.StatusCode.OK
        assert [k for k in kinds(events) if k == "month"] == ["month"] * 4
        assert events[-1].HasField("summary")
    finally:
        await mesh.channel.close()


async def test_request_id_reaches_every_step_in_the_json_logs(mesh: Mesh) -> None:
    stream = io.StringIO()
    pantree_logging.configure("DEBUG", stream)
    try:
        await mesh.orchestrator.Recommend(
            pb.RecommendRequest(history=rhythmic_history()),
            metadata=(("x-request-id", "req-4711"),),
            timeout=10,
        )
    finally:
        pantree_logging.configure("WARNING")
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    done = {r["method"]: r for r in records if r["msg"] == "rpc done"}
    assert set(done) >= {
        "/pantree.orchestrator.v1.OrchestratorService/Recommend",
        "/pantree.frequency.v1.FrequencyService/AnalyzeHistory",
        "/pantree.vectors.v1.VectorService/SearchSimilarProducts",
        "/pantree.recommendation.v1.RecommendationService/RankCandidates",
    }
    assert {r["request_id"] for r in done.values()} == {"req-4711"}


async def test_an_expired_deadline_is_deadline_exceeded_and_the_server_keeps_serving(
    mesh: Mesh,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await mesh.orchestrator.Recommend(
            pb.RecommendRequest(history=rhythmic_history()), timeout=0.001
        )
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await collect_within(mesh, seed_request(), 0.001)
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert await mesh.server.drain.wait_idle(1.0)
    assert await mesh.health_of("") == SERVING
    response = await mesh.orchestrator.Recommend(
        pb.RecommendRequest(history=rhythmic_history()), timeout=10
    )
    assert response.offers


async def test_a_cancelled_stream_stops_the_work_on_the_server(tmp_path: Path) -> None:
    mesh = await start_mesh(tmp_path, PANTREE_SIMULATION_MONTH_DELAY_MS="200")
    try:
        call = mesh.orchestrator.ProcessSeed(seed_request(months=12), timeout=30)
        while not (await call.read()).HasField("month"):
            pass
        assert mesh.server.drain.in_flight >= 2, "the orchestrator and the simulation are busy"
        call.cancel()
        assert await mesh.server.drain.wait_idle(1.0), "handlers still running 1 s after cancel"
    finally:
        await stop_mesh(mesh)


async def test_bytes_that_are_no_request_are_invalid_argument(mesh: Mesh) -> None:
    for method in ("Recommend", "ProcessSeed"):
        path = f"/pantree.orchestrator.v1.OrchestratorService/{method}"
        call = (
            mesh.channel.unary_stream(path)
            if method == "ProcessSeed"
            else mesh.channel.unary_unary(path)
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            result = call(b"\xff\xff\xff\xff garbage", timeout=5)
            if method == "ProcessSeed":
                async for _ in result:
                    pass
            else:
                await result
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
        assert [v.field for v in bad_request_violations(caught.value)] == ["request"]
    assert await mesh.health_of("") == SERVING
