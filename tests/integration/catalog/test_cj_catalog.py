"""The Complete Journey catalog built from the real data, and the simulator calibrated on it."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from google.type import date_pb2
from pantree.domain.v1 import product_pb2

from pantree_common.datasets.catalog_build import (
    EXCLUDED_DEPARTMENTS,
    MIN_CO_HOUSEHOLDS,
    build_catalog,
    household_archetypes,
)
from pantree_common.datasets.completejourney import load_completejourney
from pantree_common.datasets.transactions import Transactions
from pantree_common.domain.catalog import ARCHETYPES, Catalog
from pantree_common.domain.seed import seed_spec
from services.simulation import check
from services.simulation.simulator import Simulator


@pytest.fixture(scope="module")
def transactions() -> Transactions:
    return load_completejourney()


@pytest.fixture(scope="module")
def built(transactions: Transactions, tmp_path_factory: pytest.TempPathFactory) -> Catalog:
    path = tmp_path_factory.mktemp("catalog") / "completejourney.json.gz"
    build_catalog(transactions).save(path)
    assert path.stat().st_size < 5_000_000, "a compact file, not the 50 MB tables"
    return Catalog.load(path)


def test_archetypes_follow_the_documented_demographic_rules(transactions: Transactions) -> None:
    counts = Counter(household_archetypes(transactions).tolist())

    assert counts["busy_family"] == 288  # 195 + 93 households with kids
    assert counts["single_professional"] == 122
    assert counts["budget_conscious"] == 138
    # A quarter of the households no rule above took: 2,469 - 548 = 1,921 -> 481 at or above.
    assert 470 <= counts["health_conscious"] <= 490


def test_the_catalog_holds_the_real_products_with_prices(built: Catalog) -> None:
    assert len(built.products) > 90_000
    assert all(p.product_id.startswith("cj-") for p in built.products)
    assert not {p.department for p in built.products} & EXCLUDED_DEPARTMENTS
    assert all(p.unit_price_usd > 0 for p in built.products[:1000])
    assert len(built.categories) > 250
    assert built.categories["FLUID MILK PRODUCTS"].subscribable
    assert not built.categories["TROPICAL FRUIT"].subscribable, "fresh produce is not delivered"
    assert 7 <= built.categories["FLUID MILK PRODUCTS"].typical_interval_days <= 30


def test_most_rebought_products_come_first_and_win_word_matches(built: Catalog) -> None:
    milk = built.resolve("milk")

    assert milk is not None and milk.category == "FLUID MILK PRODUCTS"
    assert built.rank[milk.product_id] < 10
    assert {p.category for p in built.products[:20]} >= {"FLUID MILK PRODUCTS", "EGGS"}


def test_every_archetype_has_rhythms_and_typical_categories(built: Catalog) -> None:
    calibration = built.calibration
    for archetype in ARCHETYPES:
        assert len(calibration.archetype_categories[archetype]) == 20
        rhythm = calibration.rhythm("FLUID MILK PRODUCTS", archetype)
        assert rhythm is not None and rhythm.pairs > 100
    assert "TROPICAL FRUIT" in calibration.archetype_categories["health_conscious"][:5]
    assert calibration.related_categories["BABY FOODS"]
    assert all(pid in built.by_id for pid in calibration.popular_products["EGGS"])


def test_products_list_what_their_households_also_rebuy_in_other_categories(
    built: Catalog,
) -> None:
    milk = built.resolve("milk")
    assert milk is not None
    together = built.calibration.bought_together[milk.product_id]

    assert len(together) == 5
    assert all(built.by_id[pid].category != milk.category for pid, _, _ in together)
    assert all(0 < share <= 1 for _, share, _ in together)
    assert all(households >= MIN_CO_HOUSEHOLDS for _, _, households in together)
    assert len(built.calibration.bought_together) > 5000, "every product 5+ households rebuy"


def test_a_simulated_shopper_buys_real_products_at_real_rhythms(built: Catalog) -> None:
    spec = seed_spec(
        customer_id="cj-shopper",
        archetype="busy_family",
        seed_items=[product_pb2.SeedItem(name=n) for n in ("milk", "diapers", "cold cereal")],
        months=12,
        random_seed=5,
        start_date=date_pb2.Date(year=2025, month=1, day=1),
        today=dt.date(2026, 1, 1),
    )
    months = list(Simulator(built).months(spec))
    rows = [p for m in months for p in m.purchases]
    bought = {p.product_id for p in rows}

    assert bought <= set(built.by_id)
    categories = {p.category for p in rows}
    assert {"FLUID MILK PRODUCTS", "DIAPERS & DISPOSABLES", "COLD CEREAL"} <= categories
    assert len(categories) > 3, "add-ons come from related and typical categories"
    milk = sorted(
        dt.date(p.purchase_date.year, p.purchase_date.month, p.purchase_date.day)
        for p in rows
        if p.category == "FLUID MILK PRODUCTS"
    )
    gaps = np.diff([d.toordinal() for d in sorted(set(milk))])
    assert 2 <= np.median(gaps) <= 60
    assert all(p.quantity >= 1 and p.unit_price_usd > 0 for p in rows)


def test_simulated_intervals_match_held_out_households(transactions: Transactions) -> None:
    report = check.run_check(transactions, items_per_cell=1500)

    assert len(report.categories) == check.LARGEST_CATEGORIES
    assert {c.archetype for c in report.cells} == set(ARCHETYPES)
    assert report.median_ks <= check.TARGET_MEDIAN_KS
    assert report.fit_households + report.held_out_households == 2469
    text = check.markdown(report, "pantree simulate-check")
    assert f"**{report.median_ks:.3f}**" in text


def test_the_builder_writes_where_the_mesh_reads(tmp_path: Path, built: Catalog) -> None:
    from pantree_common.domain.catalog import catalog_file, open_catalog

    path = catalog_file(str(tmp_path))
    built.save(path)

    assert open_catalog("completejourney", str(tmp_path)).products == built.products


def test_archetypes_list_the_categories_fitted_on_the_real_catalog(built: Catalog) -> None:
    from pantree_common.domain.catalog import builtin_catalog, use_catalog
    from services.simulation.simulator import TYPICAL_CATEGORIES_SHOWN, archetype_protos

    use_catalog(built)
    try:
        listed = {a.archetype_id: list(a.typical_categories) for a in archetype_protos()}
    finally:
        use_catalog(builtin_catalog())

    fitted = built.calibration.archetype_categories["health_conscious"]
    assert listed["health_conscious"] == list(fitted[:TYPICAL_CATEGORIES_SHOWN])
    assert all(c in built.categories for names in listed.values() for c in names)
