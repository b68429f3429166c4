"""`pantree batch`: offers computed by hand for a small history, sharding, options and errors."""

from __future__ import annotations

import datetime as dt
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pantree_common.datasets.transactions import Items, Transactions
from pantree_common.domain import dates
from pantree_common.domain.catalog import builtin_catalog, use_catalog
from services import cli
from services.recommendation import batch
from services.recommendation.batch import BatchOptions
from services.recommendation.config import RecommendationConfig
from tests.unit.recommendation.synthetic import synthetic

START = dates.to_epoch_day(dt.date(2026, 3, 2))
CONFIG = RecommendationConfig()
ITEMS = Items(
    ("milk", "bread", "coffee", "chips"),
    ("Whole Milk", "Sourdough", "Ground Coffee", "Potato Chips"),
    ("dairy", "bakery", "coffee & tea", "snacks"),
    ("dairy", "grocery", "grocery", "grocery"),
    np.array([3.89, 2.5, 9.99, 3.0]),
)


@pytest.fixture(autouse=True)
def builtin() -> None:
    use_catalog(builtin_catalog())


def history() -> Transactions:
    """alice: milk weekly (5 times), bread weekly (a bakery: not delivered), coffee every two
    weeks (3 times, 2 units), chips twice (too few); bob: chips twice."""
    events = [(0, 0, START + 7 * week, 1.0) for week in range(5)]
    events += [(0, 1, START + 7 * week, 1.0) for week in range(5)]
    events += [(0, 2, START + 14 * k, 2.0) for k in range(3)]
    events += [(0, 3, START + 3, 1.0), (0, 3, START + 17, 1.0)]
    events += [(1, 3, START + 1, 1.0), (1, 3, START + 9, 1.0)]
    customer, item, day, quantity = (np.array(column) for column in zip(*events, strict=True))
    return Transactions.build(
        "hand-made",
        ["alice", "bob"],
        ITEMS,
        customer,
        item,
        day,
        quantity,
        ITEMS.unit_price_usd[item],
    )


def run(
    transactions: Transactions,
    path: Path,
    options: BatchOptions | None = None,
    config: RecommendationConfig = CONFIG,
) -> pa.Table:
    result = batch.run(transactions, path, options or BatchOptions(), config, 3, None)
    table = pq.read_table(path)
    assert table.num_rows == result.offers
    return table


def test_offers_computed_by_hand(tmp_path: Path) -> None:
    table = run(history(), tmp_path / "offers.parquet")
    assert table.schema == batch.SCHEMA
    rows = table.to_pylist()
    assert [(r["customer_id"], r["rank"], r["product_id"]) for r in rows] == [
        ("alice", 1, "milk"),
        ("alice", 2, "coffee"),
    ]
    milk, coffee = rows
    # 4 regular gaps: confidence 100 x (1 - e^-1); score 0.8 x 0.632121 + 0.2 x recency 1.
    assert milk["confidence"] == 63.2121
    assert milk["score"] == pytest.approx(0.7056968)
    assert (milk["predicted_interval_days"], milk["delivery_interval_days"]) == (7.0, 7)
    assert milk["interval_snap_error_days"] == 0.0
    assert milk["quantity_per_delivery"] == 1.0  # 5 units over 35 days, x 7
    assert milk["discount_percent"] == 5.0
    assert (milk["savings_per_delivery_usd"], milk["monthly_savings_usd"]) == (0.19, 0.81)
    assert milk["yearly_savings_usd"] == 9.91  # 0.19 x 365 / 7
    # The day after the analysis is START + 29; the next purchase is due on START + 35.
    assert milk["first_delivery_date"] == dt.date(2026, 3, 2) + dt.timedelta(days=35)
    assert milk["reason"] == "Bought 5 times, every 7 days on average; last bought 1 day ago."
    assert (milk["product_name"], milk["category"]) == ("Whole Milk", "dairy")
    assert not milk["cold_start"]
    assert milk["scored_by"] == "heuristic"
    assert coffee["confidence"] == 39.3469  # 2 gaps: 100 x (1 - e^-0.5)
    assert coffee["quantity_per_delivery"] == 2.0  # 6 units over 42 days, x 14
    assert coffee["savings_per_delivery_usd"] == 1.0  # 9.99 x 2 x 5%
    assert (coffee["monthly_savings_usd"], coffee["yearly_savings_usd"]) == (2.14, 26.07)
    assert coffee["first_delivery_date"] == dt.date(2026, 3, 2) + dt.timedelta(days=42)


def test_max_offers_and_the_discount_tier_count_the_shoppers_offers(tmp_path: Path) -> None:
    tiers = RecommendationConfig(discount_tiers="0:5,2:10")
    both = run(history(), tmp_path / "a.parquet", config=tiers)
    assert both.column("discount_percent").to_pylist() == [10.0, 10.0]
    one = run(history(), tmp_path / "b.parquet", BatchOptions(max_offers=1), tiers)
    assert one.column("product_id").to_pylist() == ["milk"]
    assert one.column("discount_percent").to_pylist() == [5.0]


def test_store_rules_apply(tmp_path: Path) -> None:
    rules = RecommendationConfig(
        excluded_products="milk", never_subscribe_categories="COFFEE & TEA"
    )
    assert run(history(), tmp_path / "offers.parquet", config=rules).num_rows == 0


def test_purchases_on_or_after_the_analysis_day_are_ignored(tmp_path: Path) -> None:
    transactions = history()
    as_of = START + 20
    cut = run(transactions, tmp_path / "a.parquet", BatchOptions(as_of_epoch_day=as_of))
    before = run(transactions.window(0, as_of), tmp_path / "b.parquet", BatchOptions(as_of))
    assert cut.equals(before)
    assert cut.column("reason").to_pylist()[0].startswith("Bought 3 times, every 7 days")


def test_nothing_to_score_still_writes_the_schema(tmp_path: Path) -> None:
    result = batch.run(
        history(), tmp_path / "offers.parquet", BatchOptions(as_of_epoch_day=START), CONFIG, 3, None
    )
    assert (result.customers, result.offers) == (0, 0)
    assert pq.read_table(tmp_path / "offers.parquet").schema == batch.SCHEMA


def test_shards_partition_the_customers_deterministically(tmp_path: Path) -> None:
    assert batch.shard_of(["alice", "1"], 7).tolist() == [
        zlib.crc32(b"alice") % 7,
        zlib.crc32(b"1") % 7,
    ]
    transactions, _ = synthetic(n_customers=60)
    everyone = run(transactions, tmp_path / "all.parquet")
    assert len(set(everyone.column("customer_id").to_pylist())) > 40
    parts = []
    for index in range(3):
        options = BatchOptions(shard_index=index, shard_count=3)
        part = run(transactions, tmp_path / f"{index}.parquet", options)
        assert set(batch.shard_of(part.column("customer_id").to_pylist(), 3).tolist()) <= {index}
        parts.append(part)
    # Every offer is in exactly one shard: together they are the unsharded run.
    order = [("customer_id", "ascending"), ("rank", "ascending")]
    assert pa.concat_tables(parts).sort_by(order).equals(everyone.sort_by(order))


def test_forked_workers_and_small_chunks_write_the_same_file(tmp_path: Path) -> None:
    transactions, _ = synthetic(n_customers=60)
    one = run(transactions, tmp_path / "one.parquet")
    forked = run(transactions, tmp_path / "two.parquet", BatchOptions(workers=2, chunk_events=500))
    assert pq.ParquetFile(tmp_path / "two.parquet").num_row_groups > 2
    assert forked.equals(one)


def test_the_output_is_replaced_whole_and_no_partial_file_is_left(tmp_path: Path) -> None:
    output = tmp_path / "offers.parquet"
    output.write_text("an older run")
    run(history(), output)
    assert [p.name for p in tmp_path.iterdir()] == ["offers.parquet"]


# --- the command ----------------------------------------------------------------------------


@pytest.fixture
def environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A CSV of the hand-made history and a clean environment for the command."""
    monkeypatch.setenv("PANTREE_CATALOG", "builtin")
    monkeypatch.setenv("PANTREE_DATA_DIR", str(tmp_path / "data"))
    for name in ("PANTREE_MODEL_PATH", "JOB_COMPLETION_INDEX"):
        monkeypatch.delenv(name, raising=False)
    transactions = history()
    lines = ["customer_id,item_id,date,quantity,price,item_text,category"]
    for c, i, d, q, p in zip(
        transactions.customer.tolist(),
        transactions.item.tolist(),
        transactions.day.tolist(),
        transactions.quantity.tolist(),
        transactions.price.tolist(),
        strict=True,
    ):
        lines.append(
            f"{transactions.customer_ids[c]},{ITEMS.item_ids[i]},{dates.from_epoch_day(d)},"
            f"{q},{p},{ITEMS.names[i]},{ITEMS.categories[i]}"
        )
    path = tmp_path / "purchases.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def command(*arguments: Any) -> int:
    with pytest.raises(SystemExit) as exited:
        cli.main(["batch", *map(str, arguments)])
    return int(exited.value.code or 0)


def test_the_command_writes_the_offers_and_says_so(
    environment: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "offers.parquet"
    assert command("--input", environment, "--output", output, "--quiet") == 0
    assert pq.read_table(output).column("product_id").to_pylist() == ["milk", "coffee"]
    out = capsys.readouterr().out
    assert "2 offers for 1 of 2 shoppers (shard 0 of 1), scored by heuristic" in out
    assert "as of 2026-03-31" in out


def test_the_shard_index_defaults_to_the_indexed_job_completion_index(
    environment: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice_shard = zlib.crc32(b"alice") % 2
    monkeypatch.setenv("JOB_COMPLETION_INDEX", str(1 - alice_shard))
    output = tmp_path / "offers.parquet"
    assert command("--input", environment, "--output", output, "--shard-count", 2) == 0
    assert pq.read_table(output).num_rows == 0


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--input", "{tmp}/missing.parquet"], "does not exist"),
        (["--input", "{tmp}/bad.csv"], "price: required column is missing"),
        (["--input", "nowhere"], "unknown data set 'nowhere'"),
        (["--shard-index", "2", "--shard-count", "2"], "shard-index: must be from 0 to"),
        (["--shard-count", "0"], "shard-count: must be at least 1"),
        (["--max-offers", "101"], "max-offers: must be 0"),
        (["--as-of", "2026-02-30"], "as-of: must be a date"),
        (["--workers", "0"], "workers: must be from 1"),
        (["--model", "{tmp}"], "model.skops is missing"),
        (["--output", "{tmp}/no/such/dir/offers.parquet"], "does not exist"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(
    environment: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    arguments: list[str],
    message: str,
) -> None:
    (tmp_path / "bad.csv").write_text("customer_id,item_id,date,quantity\n1,a,2026-03-01,1\n")
    given = [argument.format(tmp=tmp_path) for argument in arguments]
    defaults = {"--input": str(environment), "--output": str(tmp_path / "offers.parquet")}
    for flag, value in defaults.items():
        if flag not in given:
            given += [flag, value]
    assert command(*given) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: ") and "\n" not in error
    assert message in error
    assert not (tmp_path / "offers.parquet").exists()
