"""A deterministic synthetic purchase file of many shoppers, for `pantree batch` at scale.

Complete Journey has 2,469 households; a subscription platform scores millions of shoppers with
much shorter histories. Each synthetic shopper buys 1-4 products on a rhythm (every 7, 14, 21,
28 or 42 days, +-1 day of jitter) over 16 weeks, plus a few one-off products, from a catalog of
3,000 products in 14 categories (bakery and produce among them, which a store does not deliver
on a schedule). About 14 events per shopper: 1M shoppers are ~14M rows. The same arguments
always write the same file.

Columns, as `pantree batch --input` reads them (pantree_common.datasets.files): customer_id,
item_id, date (a timestamp), quantity, price, item_text, category.

    python bench/synthetic_shoppers.py --customers 1000000 --output /tmp/shoppers-1m.parquet
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from numpy.typing import NDArray

FIRST_DAY = np.datetime64("2026-01-05")
DAYS = 112
ITEMS = 3_000
PERIODS = np.array([7, 14, 21, 28, 42])
CATEGORIES = (
    "dairy", "bakery", "produce", "pantry", "breakfast", "snacks", "beverages",
    "coffee & tea", "frozen", "baby", "household", "personal care", "pet", "meat",
)  # fmt: skip
ONE_OFF_RATE = 3.0
"""Mean one-off purchases per shopper (Poisson)."""


def _runs(counts: NDArray[np.int64]) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """For runs of the given lengths: the run of each element and its position in the run."""
    run = np.repeat(np.arange(counts.size), counts)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return run, np.arange(run.size) - starts[run]


def generate(customers: int, seed: int) -> pa.Table:
    """The purchase rows of `customers` shoppers, sorted by customer then day."""
    rng = np.random.default_rng(seed)
    item_price = np.round(rng.uniform(0.99, 14.99, ITEMS), 2)
    item_category = rng.integers(0, len(CATEGORIES), ITEMS)

    # Rhythmic (customer, item) pairs: 1-4 per shopper, each from its own start day.
    per_customer = 1 + rng.binomial(3, 0.5, customers)
    pair_customer = np.repeat(np.arange(customers), per_customer)
    pairs = pair_customer.size
    pair_item = rng.integers(0, ITEMS, pairs)
    period = rng.choice(PERIODS, pairs)
    start = rng.integers(0, period)
    count = (DAYS - 1 - start) // period + 1
    pair, position = _runs(count)
    jitter = rng.integers(-1, 2, pair.size)
    rhythmic_day = np.clip(start[pair] + position * period[pair] + jitter, 0, DAYS - 1)

    one_offs = rng.poisson(ONE_OFF_RATE, customers)
    one_off_customer = np.repeat(np.arange(customers), one_offs)
    customer = np.concatenate([pair_customer[pair], one_off_customer])
    item = np.concatenate([pair_item[pair], rng.integers(0, ITEMS, one_off_customer.size)])
    day = np.concatenate([rhythmic_day, rng.integers(0, DAYS, one_off_customer.size)])
    quantity = rng.choice([1.0, 1.0, 1.0, 2.0, 3.0], customer.size)
    # Shelf price, 20% off on one purchase in ten.
    price = np.round(item_price[item] * np.where(rng.random(customer.size) < 0.1, 0.8, 1.0), 2)

    order = np.lexsort((item, day, customer))
    customer, item, day = customer[order], item[order], day[order]
    width = len(str(customers - 1))
    customer_ids = np.char.add("c", np.char.zfill(np.arange(customers).astype(str), width))
    item_ids = np.char.add("s-", np.char.zfill(np.arange(ITEMS).astype(str), 4))
    category = np.asarray(CATEGORIES)[item_category]
    return pa.table(
        {
            "customer_id": pa.array(customer_ids[customer]),
            "item_id": pa.array(item_ids[item]),
            "date": pa.array((FIRST_DAY + day).astype("datetime64[s]")),
            "quantity": pa.array(quantity[order]),
            "price": pa.array(price[order]),
            "item_text": pa.array(np.char.add("Product ", item_ids)[item]),
            "category": pa.array(category[item]),
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--output", type=Path, required=True, help="a .parquet file")
    args = parser.parse_args()
    started = time.perf_counter()
    table = generate(args.customers, args.seed)
    pq.write_table(table, args.output)
    print(
        f"wrote {args.output}: {args.customers:,} shoppers, {table.num_rows:,} rows "
        f"in {time.perf_counter() - started:.1f} s"
    )


if __name__ == "__main__":
    main()
