"""Unit tests of the simulation core: calendar spans, determinism, laziness and shopper shape."""

from __future__ import annotations

import datetime as dt
import inspect
import itertools
import os
import statistics
import subprocess
import sys
import types
from collections import Counter
from pathlib import Path

import pytest
from google.type import date_pb2
from pantree.domain.v1 import history_pb2, product_pb2

from pantree_common.domain import catalog, dates
from pantree_common.domain.catalog import Catalog
from pantree_common.domain.history import Product
from pantree_common.domain.seed import SeedSpec, seed_spec
from pantree_common.errors import InvalidArgument
from services.simulation.simulator import (
    ADDON_CATEGORIES,
    MAX_ADDONS_PER_CATEGORY,
    Simulator,
    archetype_protos,
)

REPO = Path(__file__).resolve().parents[3]
START = dt.date(2024, 1, 31)
STAPLES = (
    "Whole Milk 1 Gallon",
    "Large Eggs Dozen",
    "Paper Towels 6 Rolls",
    "Ground Coffee Medium Roast 12 oz",
    "Spaghetti Pasta 16 oz",
)
LOWEST_PRICE_FACTOR = 0.8 * 0.95
HIGHEST_PRICE_FACTOR = 1.05
"""The built-in rhythms' price range: shelf price +-5%, sometimes 20% off (catalog.py)."""


def make_spec(
    *items: str | product_pb2.SeedItem,
    archetype: str = "busy_family",
    months: int = 6,
    random_seed: int = 42,
    customer_id: str = "shopper-1",
    start: dt.date = START,
) -> SeedSpec:
    seeds = [product_pb2.SeedItem(name=i) if isinstance(i, str) else i for i in items or STAPLES]
    return seed_spec(
        customer_id=customer_id,
        archetype=archetype,
        seed_items=seeds,
        months=months,
        random_seed=random_seed,
        start_date=date_pb2.Date(year=start.year, month=start.month, day=start.day),
        today=dt.date(2026, 1, 1),
    )


def simulate(spec: SeedSpec) -> list[history_pb2.SimulatedMonth]:
    return list(Simulator().months(spec))


def day(date: date_pb2.Date) -> dt.date:
    return dt.date(date.year, date.month, date.day)


def purchases(months: list[history_pb2.SimulatedMonth]) -> list[history_pb2.Purchase]:
    return [p for m in months for p in m.purchases]


def seed_ids(spec: SeedSpec) -> set[str]:
    return {p.product_id for p in (catalog.resolve(s.name) for s in spec.seed_items) if p}


# --- calendar ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "months", "expected"),
    [
        (dt.date(2024, 1, 31), 1, dt.date(2024, 2, 29)),
        (dt.date(2023, 1, 31), 1, dt.date(2023, 2, 28)),
        (dt.date(2024, 12, 15), 1, dt.date(2025, 1, 15)),
        (dt.date(2024, 3, 31), 13, dt.date(2025, 4, 30)),
        (dt.date(2024, 5, 1), 0, dt.date(2024, 5, 1)),
    ],
)
def test_shift_months_keeps_day_of_month_clamped(
    start: dt.date, months: int, expected: dt.date
) -> None:
    assert dates.shift_months(start, months) == expected


def test_yields_exactly_the_requested_months_as_contiguous_calendar_spans() -> None:
    months = simulate(make_spec(months=5))

    assert [m.month_index for m in months] == [1, 2, 3, 4, 5]
    assert {m.month_count for m in months} == {5}
    spans = [(day(m.start_date), day(m.end_date)) for m in months]
    assert spans == [
        (dt.date(2024, 1, 31), dt.date(2024, 2, 28)),
        (dt.date(2024, 2, 29), dt.date(2024, 3, 30)),
        (dt.date(2024, 3, 31), dt.date(2024, 4, 29)),
        (dt.date(2024, 4, 30), dt.date(2024, 5, 30)),
        (dt.date(2024, 5, 31), dt.date(2024, 6, 29)),
    ]


def test_purchases_are_valid_sorted_inside_their_month_and_sum_to_the_total() -> None:
    months = simulate(make_spec(archetype="single_professional", months=12))

    for month in months:
        first, last = day(month.start_date), day(month.end_date)
        rows = list(month.purchases)
        assert rows, "every month of a 5-staple shopper has purchases"
        keys = [(day(p.purchase_date), p.product_id) for p in rows]
        assert keys == sorted(keys)
        assert len(set(keys)) == len(keys), "an item is bought at most once a day"
        assert all(first <= d <= last for d, _ in keys)
        assert all(p.quantity > 0 and p.quantity == int(p.quantity) for p in rows)
        assert all(
            p.unit_price_usd >= 0 and round(p.unit_price_usd, 2) == p.unit_price_usd for p in rows
        )
        assert all(p.product_name and p.category for p in rows)
        assert month.total_spend_usd == round(sum(p.quantity * p.unit_price_usd for p in rows), 2)


def test_two_hundred_items_over_two_years_buy_each_item_at_most_once_a_day() -> None:
    builtin = catalog.builtin_catalog()
    extra = tuple(
        Product(f"x-{i}", f"Pantry item {i}", "pantry", "grocery", 1.0)
        for i in range(200 - len(builtin.products))
    )
    bigger = Catalog("test", builtin.products + extra, builtin.categories, builtin.calibration)
    names = [p.name for p in bigger.products]
    months = list(Simulator(bigger).months(make_spec(*names, archetype="busy_family", months=24)))
    keys = [(day(p.purchase_date), p.product_id) for p in purchases(months)]

    assert len(months) == 24
    assert len(keys) > 10_000
    assert len(set(keys)) == len(keys)


# --- determinism and laziness -------------------------------------------------------------------


def test_same_spec_gives_identical_months_and_another_seed_differs() -> None:
    first = simulate(make_spec(months=12))

    assert simulate(make_spec(months=12)) == first
    assert simulate(make_spec(months=12, random_seed=43)) != first
    assert simulate(make_spec(months=12, random_seed=-42)) != first
    assert simulate(make_spec(months=12, customer_id="shopper-2")) != first


def test_months_are_identical_in_another_process_with_another_hash_seed() -> None:
    script = (
        "import sys\n"
        "from tests.unit.simulation.test_simulator import make_spec, simulate\n"
        "for m in simulate(make_spec(months=3)):\n"
        "    sys.stdout.write(m.SerializeToString(deterministic=True).hex() + '\\n')\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout

    here = [m.SerializeToString(deterministic=True).hex() for m in simulate(make_spec(months=3))]
    assert out.split() == here


def test_months_is_a_lazy_generator_whose_prefix_matches_a_full_run() -> None:
    spec = make_spec(months=24)
    full = simulate(spec)

    stream = Simulator().months(spec)
    assert isinstance(stream, types.GeneratorType)
    assert inspect.getgeneratorstate(stream) == inspect.GEN_CREATED  # nothing computed yet
    assert next(stream) == full[0]
    assert inspect.getgeneratorstate(stream) == inspect.GEN_SUSPENDED  # stopped after month 1
    assert list(itertools.islice(stream, 4)) == full[1:5]
    assert list(itertools.islice(Simulator().months(spec), 10)) == full[:10]


def test_a_month_does_not_depend_on_how_many_months_follow() -> None:
    short = simulate(make_spec(months=3))
    long = simulate(make_spec(months=24))

    for a, b in zip(short, long[:3], strict=True):
        b.month_count = a.month_count
        assert a == b


# --- seed items ---------------------------------------------------------------------------------


def test_every_seed_item_is_bought_on_day_zero_with_its_given_quantity_and_price() -> None:
    spec = make_spec(
        product_pb2.SeedItem(name="greek yogurt", quantity=3, unit_price_usd=6.25),
        product_pb2.SeedItem(name="dog food"),
        product_pb2.SeedItem(
            name="whatever the shopper calls it", product_id="p-2502", quantity=0.5
        ),
        archetype="health_conscious",
    )
    first_day = [p for p in simulate(spec)[0].purchases if day(p.purchase_date) == START]
    by_id = {p.product_id: p for p in first_day}

    assert {"p-1005", "p-2501", "p-2502"} <= set(by_id)
    assert (by_id["p-1005"].quantity, by_id["p-1005"].unit_price_usd) == (3, 6.25)
    assert by_id["p-2502"].quantity == 0.5
    dog_food = catalog.products_by_id()["p-2501"].unit_price_usd * 1.15
    assert dog_food * LOWEST_PRICE_FACTOR <= by_id["p-2501"].unit_price_usd
    assert by_id["p-2501"].unit_price_usd <= dog_food * HIGHEST_PRICE_FACTOR


def test_seed_quantity_and_price_set_the_later_baskets_too() -> None:
    spec = make_spec(
        product_pb2.SeedItem(name="greek yogurt", quantity=3, unit_price_usd=6.25),
        archetype="busy_family",
        months=12,
    )
    later = [
        p
        for p in purchases(simulate(spec))
        if p.product_id == "p-1005" and day(p.purchase_date) > START
    ]

    assert len(later) > 30
    assert statistics.median(p.quantity for p in later) == 3
    assert all(
        6.25 * LOWEST_PRICE_FACTOR - 0.005
        <= p.unit_price_usd
        <= 6.25 * HIGHEST_PRICE_FACTOR + 0.005
        for p in later
    )
    assert len({p.unit_price_usd for p in later}) > 5, "prices vary from trip to trip"


def test_catalog_prices_follow_the_archetype_with_noise_and_promotions() -> None:
    spec = make_spec("Whole Milk 1 Gallon", archetype="budget_conscious", months=24)
    milk = [p.unit_price_usd for p in purchases(simulate(spec)) if p.product_id == "p-1001"]
    shelf = 3.89 * 0.85

    assert all(
        shelf * LOWEST_PRICE_FACTOR - 0.005 <= p <= shelf * HIGHEST_PRICE_FACTOR + 0.005
        for p in milk
    )
    promoted = [p for p in milk if p < shelf * 0.95 - 0.005]
    assert 0 < len(promoted) < len(milk) / 3


def test_unresolvable_items_are_all_reported_before_any_month() -> None:
    spec = make_spec(
        product_pb2.SeedItem(name="Quinoa Kimchi"),
        product_pb2.SeedItem(name="milk"),
        product_pb2.SeedItem(name="牛奶"),
        product_pb2.SeedItem(name="eggs", product_id="not-a-product"),
    )

    with pytest.raises(InvalidArgument) as raised:
        simulate(spec)

    fields = {v.field: v.description for v in raised.value.violations}
    assert set(fields) == {
        "seed_items[0].name",
        "seed_items[2].name",
        "seed_items[3].product_id",
    }
    assert "'Quinoa Kimchi'" in fields["seed_items[0].name"]
    assert "'not-a-product' is not in the built-in catalog" in fields["seed_items[3].product_id"]


@pytest.mark.parametrize("months", [-(2**31), -1, 25, 2**27, 2**31 - 1])
def test_months_out_of_range_are_reported_without_a_start_date(months: int) -> None:
    with pytest.raises(InvalidArgument) as raised:
        seed_spec(
            customer_id="",
            archetype="busy_family",
            seed_items=[product_pb2.SeedItem(name="milk")],
            months=months,
            random_seed=1,
            start_date=None,
            today=dt.date(2026, 1, 1),
        )

    assert [v.field for v in raised.value.violations] == ["months"]


def test_a_resolved_product_id_wins_over_the_name() -> None:
    spec = make_spec(product_pb2.SeedItem(name="milk", product_id="p-2303"), months=1)
    first_day = [p.product_id for p in simulate(spec)[0].purchases if day(p.purchase_date) == START]

    assert "p-2303" in first_day and "p-1001" not in first_day


def test_names_resolving_to_one_product_are_bought_once_per_trip() -> None:
    spec = make_spec("milk", "Whole Milk 1 Gallon", "eggs", months=1)
    first_day = [p.product_id for p in simulate(spec)[0].purchases if day(p.purchase_date) == START]

    assert first_day.count("p-1001") == 1
    assert "p-1101" in first_day


# --- renewal process and archetypes -------------------------------------------------------------


def test_seed_items_are_rebought_at_the_category_pace_times_the_archetype_factor() -> None:
    spec = make_spec(*STAPLES, archetype="health_conscious", months=24)
    months = simulate(spec)
    days = (day(months[-1].end_date) - START).days + 1
    counts = Counter(p.product_id for p in purchases(months))

    for name in STAPLES:
        product = catalog.resolve(name)
        assert product is not None
        mean = catalog.CATEGORIES[product.category].typical_interval_days * 0.9
        assert counts[product.product_id] == pytest.approx(days / mean, rel=0.15)


def test_busy_family_buys_more_often_than_budget_conscious() -> None:
    def seed_trips(archetype: str) -> int:
        spec = make_spec(*STAPLES, archetype=archetype, months=12)
        return sum(p.product_id in seed_ids(spec) for p in purchases(simulate(spec)))

    busy, budget = seed_trips("busy_family"), seed_trips("budget_conscious")
    assert busy > 1.4 * budget  # interval factors 0.7 vs 1.25


def test_busy_family_buys_bigger_baskets() -> None:
    def median_quantity(archetype: str) -> float:
        spec = make_spec("Whole Milk 1 Gallon", archetype=archetype, months=12)
        return statistics.median(p.quantity for p in purchases(simulate(spec)))

    assert median_quantity("busy_family") == 2  # dairy's 1 unit x 2.0
    assert median_quantity("single_professional") == 1  # 0.8 rounds up to the 1-unit floor


@pytest.mark.parametrize("archetype", list(catalog.ARCHETYPES))
def test_add_ons_come_from_the_archetype_first_categories(archetype: str) -> None:
    spec = make_spec(*STAPLES, "Baby Diapers Size 3 84 ct", archetype=archetype, months=12)
    rows = purchases(simulate(spec))
    addons = {p.product_id for p in rows} - seed_ids(spec)
    seeded = {catalog.products_by_id()[pid].category for pid in seed_ids(spec)}
    typical = catalog.ARCHETYPES[archetype].typical_categories
    wanted = [c for c in typical if c not in seeded][:ADDON_CATEGORIES]
    per_category = Counter(catalog.products_by_id()[pid].category for pid in addons)

    assert set(per_category) == set(wanted)
    assert all(1 <= n <= MAX_ADDONS_PER_CATEGORY for n in per_category.values())
    assert simulate(
        make_spec(
            *STAPLES, "Baby Diapers Size 3 84 ct", archetype=archetype, months=12, random_seed=7
        )
    ) != simulate(spec)


def test_add_ons_start_at_a_random_phase_not_all_on_day_zero() -> None:
    spec = make_spec("Cat Litter 20 lb", archetype="busy_family", months=2)
    rows = purchases(simulate(spec))
    first_trip: dict[str, dt.date] = {}
    for p in rows:
        first_trip.setdefault(p.product_id, day(p.purchase_date))

    addon_starts = [d for pid, d in first_trip.items() if pid != "p-2502"]
    assert len(addon_starts) >= ADDON_CATEGORIES
    assert len(set(addon_starts)) > 1
    assert any(d > START for d in addon_starts)


# --- archetypes -------------------------------------------------------------------------------


def test_archetype_protos_list_the_four_archetypes_in_catalog_order() -> None:
    protos = archetype_protos()

    assert [a.archetype_id for a in protos] == [
        "health_conscious",
        "busy_family",
        "budget_conscious",
        "single_professional",
    ]
    busy = protos[1]
    assert busy.display_name == "Busy family"
    assert busy.description == catalog.ARCHETYPES["busy_family"].description
    assert tuple(busy.typical_categories) == catalog.ARCHETYPES["busy_family"].typical_categories
    assert archetype_protos() == protos
