"""Users' own purchase files (CSV, gzipped CSV, Parquet): good files and every kind of bad one."""

from __future__ import annotations

import datetime as dt
import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pantree_common.datasets.files import load_file, merge_same_day
from pantree_common.domain.dates import to_epoch_day
from pantree_common.errors import InvalidArgument

GOOD_CSV = """\
 Customer_ID ,item_id,date,quantity,price,item_text,category
007,milk,2024-03-05,1,3.50,Whole Milk 1 GAL,dairy
007,milk,2024-03-05T23:30:00-05:00,2,3.20,,
007,coffee,2024-03-01 08:15:00,1,8.99,,coffee
42,milk,2024-02-28,1.5,0,Milk (2nd name ignored),other
"""


def _write(tmp_path: Path, text: str, name: str = "purchases.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _csv(rows: list[str], header: str = "customer_id,item_id,date,quantity,price") -> str:
    return "\n".join([header, *rows]) + "\n"


def _violations(path: Path) -> dict[str, str]:
    with pytest.raises(InvalidArgument) as caught:
        load_file(path)
    return {v.field: v.description for v in caught.value.violations}


def test_csv_file_loads_with_merged_same_day_rows_and_item_metadata(tmp_path: Path) -> None:
    tx = load_file(_write(tmp_path, GOOD_CSV, "my_store.csv"))
    assert tx.name == "my_store"
    assert tx.customer_ids == ("007", "42")  # text, leading zeros kept
    assert tx.items.item_ids == ("coffee", "milk")
    assert tx.items.names == ("coffee", "Whole Milk 1 GAL")  # first non-empty name, else the id
    assert tx.items.categories == ("coffee", "dairy")
    assert tx.items.departments == ("", "")
    mar1, mar5 = to_epoch_day(dt.date(2024, 3, 1)), to_epoch_day(dt.date(2024, 3, 5))
    feb28 = to_epoch_day(dt.date(2024, 2, 28))
    # The 23:30-05:00 purchase keeps the date as written and merges with the same-day row.
    assert tx.customer.tolist() == [0, 0, 1]
    assert tx.day.tolist() == [mar1, mar5, feb28]
    assert tx.item.tolist() == [0, 1, 1]
    assert tx.quantity.tolist() == [1.0, 3.0, 1.5]
    assert tx.price.tolist() == pytest.approx([8.99, (3.50 + 2 * 3.20) / 3, 0.0])
    assert tx.items.unit_price_usd.tolist() == pytest.approx([8.99, 3.20])


def test_gzipped_csv_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "history.csv.gz"
    path.write_bytes(gzip.compress(GOOD_CSV.encode()))
    tx = load_file(path)
    assert tx.name == "history"
    assert tx.event_count == 3


def test_parquet_file_with_typed_columns_loads(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "customer_id": [7, 7, 42],
            "item_id": ["milk", "eggs", "milk"],
            "date": pd.to_datetime(
                ["2024-03-05 23:30", "2024-03-05 01:00", "2024-03-06 00:10"]
            ).tz_localize("America/New_York"),
            "quantity": [1, 2, 1],
            "price": [3.5, 2.25, 3.0],
            "department": ["dairy", "dairy", ""],
        }
    )
    path = tmp_path / "typed.parquet"
    frame.to_parquet(path)
    tx = load_file(path)
    assert tx.name == "typed"
    assert tx.customer_ids == ("42", "7")
    assert tx.items.item_ids == ("eggs", "milk")
    assert tx.items.names == ("eggs", "milk")
    assert tx.items.departments == ("dairy", "dairy")
    mar5, mar6 = to_epoch_day(dt.date(2024, 3, 5)), to_epoch_day(dt.date(2024, 3, 6))
    assert tx.day.tolist() == [mar6, mar5, mar5]  # local dates as written, not UTC
    assert tx.quantity.tolist() == [1.0, 2.0, 1.0]


def test_parquet_dates_as_calendar_dates_and_text(tmp_path: Path) -> None:
    path = tmp_path / "dates.parquet"
    pd.DataFrame(
        {
            "customer_id": ["a", "a"],
            "item_id": ["x", "y"],
            "date": [dt.date(2023, 12, 31), dt.date(2024, 1, 1)],
            "quantity": [1.0, 1.0],
            "price": [1.0, 2.0],
        }
    ).to_parquet(path)
    assert load_file(path).day.tolist() == [
        to_epoch_day(dt.date(2023, 12, 31)),
        to_epoch_day(dt.date(2024, 1, 1)),
    ]


def test_parquet_text_read_as_dictionary_codes_loads_as_the_same_text_in_a_csv(
    tmp_path: Path,
) -> None:
    """Parquet text columns are read as dictionary codes (Categoricals), CSV text as strings:
    stripping, blanks, first names and the merge must not tell them apart."""
    rng = np.random.default_rng(3)
    rows = 400
    customers = np.array(["007", " 007", "b", "a ", "c"])
    names = np.array(["", "Milk", " Milk ", "Eggs", ""])
    frame = pd.DataFrame(
        {
            " Customer_ID": customers[rng.integers(0, 5, rows)],
            "item_id": np.array(["x", "y ", "z", "y"])[rng.integers(0, 4, rows)],
            "date": np.array(["2024-01-02", "2024-01-02T23:00:00-05:00", "2024-01-05"])[
                rng.integers(0, 3, rows)
            ],
            "quantity": rng.integers(1, 4, rows).astype(float),
            "price": rng.integers(0, 500, rows) / 100,
            "item_text": names[rng.integers(0, 5, rows)],
            "category": np.array(["dairy", "", "eggs"])[rng.integers(0, 3, rows)],
            "unused": np.arange(rows),
        }
    )
    frame.to_csv(tmp_path / "same.csv", index=False)
    frame.to_parquet(tmp_path / "same.parquet")
    from_csv, from_parquet = load_file(tmp_path / "same.csv"), load_file(tmp_path / "same.parquet")
    assert from_parquet.customer_ids == from_csv.customer_ids == ("007", "a", "b", "c")
    assert from_parquet.items.item_ids == from_csv.items.item_ids == ("x", "y", "z")
    for field in ("item_ids", "names", "categories", "departments"):
        assert getattr(from_parquet.items, field) == getattr(from_csv.items, field)
    assert np.array_equal(from_parquet.items.unit_price_usd, from_csv.items.unit_price_usd)
    for column in ("customer", "item", "day", "quantity", "price"):
        assert np.array_equal(getattr(from_parquet, column), getattr(from_csv, column))
    frame.drop(columns=["price"]).to_parquet(tmp_path / "no_price.parquet")
    assert "required column is missing" in _violations(tmp_path / "no_price.parquet")["price"]


@pytest.mark.parametrize("span", [10, 2**31], ids=["one sort key", "lexsort"])
def test_merge_same_day_sums_each_customer_day_and_item(span: int) -> None:
    """Same as a pandas group-by, whether the order comes from the combined int64 key or,
    where the day and item ranges overflow it, from lexsort."""
    rng = np.random.default_rng(11)
    rows = 5_000
    customer = rng.integers(0, 20, rows)
    item = rng.integers(0, 10, rows) * (span // 10)
    day = 19_000 + rng.integers(0, 5, rows) * (span // 10)
    quantity = rng.integers(1, 5, rows).astype(float)
    spend = quantity * rng.integers(0, 300, rows) / 100
    c, i, d, q, price = merge_same_day(customer, item, day, quantity, spend)
    expected = (
        pd.DataFrame({"c": customer, "d": day, "i": item, "q": quantity, "s": spend})
        .groupby(["c", "d", "i"], sort=True)
        .sum()
        .reset_index()
    )
    assert c.tolist() == expected["c"].tolist()
    assert d.tolist() == expected["d"].tolist()
    assert i.tolist() == expected["i"].tolist()
    assert q == pytest.approx(expected["q"].to_numpy())
    assert price == pytest.approx((expected["s"] / expected["q"]).to_numpy())
    assert c.size < rows


def test_missing_columns_are_named(tmp_path: Path) -> None:
    path = _write(tmp_path, "customer_id,item,day,quantity,price\na,b,2024-01-01,1,1\n")
    violations = _violations(path)
    assert set(violations) == {"item_id", "date"}
    assert "required column is missing" in violations["date"]


def test_bad_values_name_their_column_and_file_lines(tmp_path: Path) -> None:
    rows = [
        "a,x,2024-01-01,1,1.5",  # line 2: fine
        "a,x,01/02/2024,1,1.5",  # line 3: not ISO
        "a,x,2024-02-30,1,1.5",  # line 4: impossible date
        "a,x,2024-01-03Tnoon,1,1.5",  # line 5: bad time part
        "a,x,,1,1.5",  # line 6: empty date
        "a,x,2024-01-01,0,1.5",  # line 7: zero quantity
        "a,x,2024-01-01,-2,1.5",  # line 8: negative quantity
        "a,x,2024-01-01,two,1.5",  # line 9: not a number
        "a,x,2024-01-01,1,-0.5",  # line 10: negative price
        "a,x,2024-01-01,1,inf",  # line 11: infinite price
        "a,x,2024-01-01,1,nan",  # line 12: NaN price
        ",x,2024-01-01,1,1",  # line 13: empty customer
        "a, ,2024-01-01,1,1",  # line 14: blank item
        "a,x,2024-01-01,1,",  # line 15: empty price
    ]
    with pytest.raises(InvalidArgument) as caught:
        load_file(_write(tmp_path, _csv(rows)))
    found = [(v.field, v.description) for v in caught.value.violations]
    assert found == [
        ("customer_id", "empty at line 13"),
        ("item_id", "empty at line 14"),
        ("date", "empty at line 6"),
        ("date", "not an ISO date (YYYY-MM-DD) or date-time at lines 3, 4, 5"),
        ("quantity", "not a number at line 9"),
        ("quantity", "not positive (must be > 0) at lines 7, 8"),
        ("price", "empty at line 15"),
        ("price", "not a number at line 12"),
        ("price", "not a finite number at line 11"),
        ("price", "negative (must be >= 0) at line 10"),
    ]
    assert "Traceback" not in caught.value.message


def test_many_bad_rows_are_summarised(tmp_path: Path) -> None:
    rows = ["a,x,2024-01-01,0,1" for _ in range(8)]
    violations = _violations(_write(tmp_path, _csv(rows)))
    assert violations == {
        "quantity": "not positive (must be > 0) at lines 2, 3, 4, 5, 6 (and 3 more)"
    }


def test_parquet_bad_values_name_their_rows(tmp_path: Path) -> None:
    path = tmp_path / "bad.parquet"
    pd.DataFrame(
        {
            "customer_id": ["a", "b", "c"],
            "item_id": ["x", "x", "x"],
            "date": ["2024-01-01", "2024-01-01", "yesterday"],
            "quantity": [1.0, np.nan, 1.0],
            "price": [np.inf, 1.0, 1.0],
        }
    ).to_parquet(path)
    assert _violations(path) == {
        "date": "not an ISO date (YYYY-MM-DD) or date-time at row 3",
        "quantity": "empty at row 2",
        "price": "not a finite number at row 1",
    }


def test_parquet_nullable_columns_report_missing_values(tmp_path: Path) -> None:
    path = tmp_path / "nullable.parquet"
    pd.DataFrame(
        {
            "customer_id": pd.array([1, None], dtype="Int64"),
            "item_id": ["x", None],
            "date": pd.to_datetime(["2024-01-01", None]),
            "quantity": pd.array([1, None], dtype="Int64"),
            "price": [True, False],
        }
    ).to_parquet(path)
    assert _violations(path) == {
        "customer_id": "empty at row 2",
        "item_id": "empty at row 2",
        "date": "empty at row 2",
        "quantity": "empty at row 2",
        "price": "must be numbers, not true/false",
    }
    path = tmp_path / "nullable_ok.parquet"
    pd.DataFrame(
        {
            "customer_id": pd.array([1, 2], dtype="Int64"),
            "item_id": [10.0, 11.0],
            "date": ["2024-01-01", "2024-01-02"],
            "quantity": pd.array([1, 3], dtype="Int64"),
            "price": pd.array([1.5, 2.0], dtype="Float64"),
        }
    ).to_parquet(path)
    tx = load_file(path)
    assert tx.customer_ids == ("1", "2")
    assert tx.items.item_ids == ("10", "11")  # integral floats lose their ".0"
    assert tx.quantity.tolist() == [1.0, 3.0]


def test_too_long_ids_are_rejected(tmp_path: Path) -> None:
    violations = _violations(_write(tmp_path, _csv([f"{'c' * 129},x,2024-01-01,1,1"])))
    assert violations == {"customer_id": "longer than 128 characters at line 2"}


def test_unreadable_or_unsupported_files_are_clear_errors(tmp_path: Path) -> None:
    cases = {
        "notes.txt": "unsupported file type",
        "missing.csv": "does not exist",
    }
    (tmp_path / "notes.txt").write_text("hello")
    for name, message in cases.items():
        assert message in _violations(tmp_path / name)["path"]
    assert "is empty" in _violations(_write(tmp_path, "", "empty.csv"))["path"]
    header_only = _write(tmp_path, _csv([]), "header.csv")
    assert "no purchase rows" in _violations(header_only)["path"]
    ragged = _write(tmp_path, _csv(['a,x,2024-01-01,1,1,"extra', "b"]), "ragged.csv")
    assert "not a readable CSV file" in _violations(ragged)["path"]
    fake_gz = tmp_path / "fake.csv.gz"
    fake_gz.write_bytes(b"not gzip at all")
    assert "not a readable CSV file" in _violations(fake_gz)["path"]
    fake_parquet = tmp_path / "fake.parquet"
    fake_parquet.write_bytes(b"PAR1 nonsense")
    assert "not a readable Parquet file" in _violations(fake_parquet)["path"]
    latin = tmp_path / "latin.csv"
    latin.write_bytes(_csv(["a,caf\xe9,2024-01-01,1,1"]).encode("latin-1"))
    assert "not a readable CSV file" in _violations(latin)["path"]
