"""The catalog type, its file format and the calibration it carries (built-in catalog only)."""

from __future__ import annotations

import gzip
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from pantree_common.domain import catalog
from pantree_common.domain.calibration import ALL_ARCHETYPES, Quantiles, sample_rows
from pantree_common.domain.catalog import (
    Catalog,
    builtin_catalog,
    catalog_file,
    open_catalog,
    use_catalog,
)
from pantree_common.errors import ConfigError


def test_weighted_quantiles_follow_the_weights() -> None:
    samples = np.array([1.0, 10.0])
    even = Quantiles.fit(samples, points=5)
    heavy = Quantiles.fit(samples, np.array([1.0, 9.0]), points=5)

    assert even.values[0] == 1 and even.values[-1] == 10
    assert even.median == pytest.approx(5.5)
    assert heavy.median > 9, "90% of the weight sits on 10"
    assert heavy.values[3:] == (10, 10)
    assert list(heavy.values) == sorted(heavy.values)


def test_sampling_reproduces_the_distribution() -> None:
    rng = np.random.default_rng(3)
    source = rng.gamma(2.0, 7.0, 50_000)
    fitted = Quantiles.fit(source)
    rows = np.zeros(50_000, dtype=np.int64)
    drawn = sample_rows(fitted.on_grid()[np.newaxis], rows, np.random.default_rng(4))

    for q in (0.1, 0.5, 0.9):
        assert np.quantile(drawn, q) == pytest.approx(np.quantile(source, q), rel=0.03)


def test_sample_rows_draws_each_row_from_its_own_distribution() -> None:
    table = np.array([Quantiles.constant(3.0).on_grid(), Quantiles.constant(40.0).on_grid()])
    rows = np.array([0, 1, 1, 0])

    assert sample_rows(table, rows, np.random.default_rng(0)).tolist() == [3, 40, 40, 3]


def test_quantiles_must_not_decrease() -> None:
    with pytest.raises(ValueError, match="non-decreasing"):
        Quantiles((2.0, 1.0))


def test_the_file_round_trips_every_product_category_and_rhythm(tmp_path: Path) -> None:
    builtin = builtin_catalog()
    path = tmp_path / "catalog.json.gz"
    builtin.save(path)
    loaded = Catalog.load(path)

    assert loaded.products == builtin.products
    assert dict(loaded.categories) == dict(builtin.categories)
    assert dict(loaded.calibration.rhythms) == dict(builtin.calibration.rhythms)
    assert loaded.calibration.archetype_categories == builtin.calibration.archetype_categories
    assert not list(tmp_path.glob("*.partial")), "the write is atomic"


def test_bought_together_lists_round_trip_and_older_files_have_none() -> None:
    builtin = builtin_catalog()
    lists = {"p-1001": (("p-1101", 0.42, 21), ("p-1202", 0.3, 15))}
    calibration = replace(builtin.calibration, bought_together=lists)
    data = replace(builtin, calibration=calibration).to_json()

    assert Catalog.from_json(data).calibration.bought_together == lists
    data["calibration"]["bought_together"] = {"p-1001": [["p-1101", 0.42]]}  # before the count
    assert Catalog.from_json(data).calibration.bought_together == {"p-1001": (("p-1101", 0.42, 0),)}
    del data["calibration"]["bought_together"]
    assert Catalog.from_json(data).calibration.bought_together == {}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not gzip at all", "cannot read the catalog file"),
        (gzip.compress(b'{"format": "pantree-catalog/0"}'), "rebuild it"),
        (gzip.compress(b'{"format": "pantree-catalog/2"}'), "cannot read the catalog file"),
    ],
)
def test_a_broken_file_is_a_clear_configuration_error(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "catalog.json.gz"
    path.write_bytes(content)

    with pytest.raises(ConfigError, match=message):
        Catalog.load(path)


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("unit_price_usd", float("nan"), "finite number >= 0"),
        ("unit_price_usd", -1.0, "finite number >= 0"),
        ("product_id", "p-1002", "product ids must be unique"),
        ("category", 999, "cannot read the catalog file"),
    ],
)
def test_a_hostile_catalog_file_is_refused(
    tmp_path: Path, column: str, value: object, message: str
) -> None:
    data = builtin_catalog().to_json()
    data["products"][column][0] = value
    path = tmp_path / "hostile.json.gz"
    with gzip.open(path, "wt", encoding="utf-8") as out:
        json.dump(data, out)

    with pytest.raises(ConfigError, match=message):
        Catalog.load(path)


def test_open_catalog_reads_a_named_file_and_refuses_a_missing_one(tmp_path: Path) -> None:
    path = tmp_path / "mine.json.gz"
    data = builtin_catalog().to_json()
    data["source"] = "my store"
    with gzip.open(path, "wt", encoding="utf-8") as out:
        json.dump(data, out)

    assert open_catalog(str(path), str(tmp_path)).source == "my store"
    assert open_catalog("builtin", str(tmp_path)) is builtin_catalog()
    with pytest.raises(ConfigError, match="neither completejourney nor builtin"):
        open_catalog(str(tmp_path / "absent.json.gz"), str(tmp_path))
    assert catalog_file(str(tmp_path)).parent == tmp_path / "catalog"


def test_the_active_catalog_is_the_one_chosen_at_start_up() -> None:
    builtin = builtin_catalog()
    smaller = Catalog("two products", builtin.products[:2], builtin.categories, builtin.calibration)
    use_catalog(smaller)
    try:
        assert catalog.products() == builtin.products[:2]
        assert catalog.resolve("eggs") is None
        assert catalog.resolve("whole milk") == builtin.products[0]
    finally:
        use_catalog(builtin)


def test_resolve_prefers_more_shared_words_then_the_earlier_product() -> None:
    builtin = builtin_catalog()

    assert builtin.resolve("milk").product_id == "p-1001"  # type: ignore[union-attr]
    assert builtin.resolve("oat milk").product_id == "p-1003"  # type: ignore[union-attr]
    assert builtin.resolve("organic eggs").product_id == "p-1102"  # type: ignore[union-attr]
    assert builtin.resolve("nothing like it") is None


def test_builtin_rhythms_scale_the_category_by_the_archetype() -> None:
    calibration = builtin_catalog().calibration
    dairy = builtin_catalog().categories["dairy"]
    busy = calibration.rhythm("dairy", "busy_family")
    everyone = calibration.rhythm("dairy", ALL_ARCHETYPES)

    assert busy is not None and everyone is not None
    assert busy.mean_interval_days.median == pytest.approx(dairy.typical_interval_days * 0.7)
    assert everyone.mean_interval_days.median == dairy.typical_interval_days
    assert calibration.rhythm("no such category", "busy_family") is None
    assert builtin_catalog().subscribable("dairy") and not builtin_catalog().subscribable("bakery")
    assert builtin_catalog().subscribable("a category nobody knows")
