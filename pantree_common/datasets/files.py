"""A user's own purchases from a CSV or Parquet file, and the column assembly every loader shares.

The file has one row per purchase with the columns

- `customer_id`, `item_id`: any text (numbers are read as text, leading zeros kept);
- `date`: an ISO date (`2024-03-05`) or date-time (`2024-03-05T18:30:00-05:00`); the date part
  is taken as written, without converting between time zones;
- `quantity`: a number > 0; `price`: the unit price paid in US dollars, a finite number >= 0;
- optional `item_text` (the item's name), `category` and `department`: per item, the first
  non-empty value in file order wins; the name defaults to the item id.

Column names are matched without regard to case or surrounding spaces. Bad input raises one
`InvalidArgument` naming every bad column and the first offending rows (file lines for CSV,
1-based rows for Parquet), never a pandas traceback.

Every loader merges the rows of one customer, day and item into one event (quantities summed,
price = amount paid / quantity) and prices each item at the median unit price paid.

Memory: a Parquet file's text columns are read as dictionary codes (one small integer per row,
each distinct text once) and only the columns above are read; the checks run on the distinct
values. The synthetic 1M-shopper file of bench/batch_throughput.py (21M rows) loads with a
peak of 2.4-2.7 GB (4.8 GB with a string per row).
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from numpy.typing import NDArray

from pantree_common.datasets.transactions import Items, Transactions
from pantree_common.domain.history import MAX_CATEGORY_CHARS, MAX_ID_CHARS, MAX_NAME_CHARS
from pantree_common.errors import Collector, FieldViolation, InvalidArgument

SUFFIXES = (".csv", ".csv.gz", ".parquet")
REQUIRED_COLUMNS = ("customer_id", "item_id", "date", "quantity", "price")
OPTIONAL_COLUMNS = ("item_text", "category", "department")
_TEXT_COLUMNS = ("customer_id", "item_id", "date", *OPTIONAL_COLUMNS)
"""Columns read as dictionary codes when a Parquet file stores them as strings."""
_SHOWN_ROWS = 5
_ISO_DATE = r"^\d{4}-\d{2}-\d{2}(?:[T ].*)?$"


# --- column assembly shared by every loader -------------------------------------------------


def merge_same_day(
    customer: NDArray[np.integer],
    item: NDArray[np.integer],
    day: NDArray[np.integer],
    quantity: NDArray[np.floating],
    spend: NDArray[np.floating],
) -> tuple[
    NDArray[np.int32],
    NDArray[np.int32],
    NDArray[np.int32],
    NDArray[np.float64],
    NDArray[np.float64],
]:
    """One event per (customer, day, item), sorted that way: quantities and amounts paid are
    summed; returns (customer, item, day, quantity, unit price = amount / quantity).
    Each temporary column is freed as soon as it is used: on 21M rows each is 84-168 MB."""
    order = _event_order(customer, item, day)
    c = np.asarray(customer, dtype=np.int32)[order]
    i = np.asarray(item, dtype=np.int32)[order]
    d = np.asarray(day, dtype=np.int32)[order]
    new = np.ones(c.size, dtype=bool)
    new[1:] = (c[1:] != c[:-1]) | (d[1:] != d[:-1]) | (i[1:] != i[:-1])
    starts = np.flatnonzero(new)
    del new
    if starts.size == 0:
        empty = np.zeros(0)
        return c, i, d, empty, empty
    q = np.add.reduceat(np.asarray(quantity, dtype=np.float64)[order], starts)
    price = np.add.reduceat(np.asarray(spend, dtype=np.float64)[order], starts)
    del order
    price /= q
    return c[starts], i[starts], d[starts], q, price


def _event_order(
    customer: NDArray[np.integer], item: NDArray[np.integer], day: NDArray[np.integer]
) -> NDArray[np.intp]:
    """The stable order by (customer, day, item): one argsort of a combined int64 key when the
    ranges fit in it (several times faster than lexsort on millions of rows), else lexsort."""
    if customer.size == 0:
        return np.zeros(0, dtype=np.intp)
    first_day = int(day.min())
    days, items = int(day.max()) - first_day + 1, int(item.max()) + 1
    if (
        int(customer.max()) + 1 >= np.iinfo(np.int64).max // (days * items)
        or item.min() < 0
        or customer.min() < 0
    ):
        return np.lexsort((item, day, customer))
    # Built in place: one int64 column of temporary memory, not one per operation.
    key = np.asarray(customer, dtype=np.int64) * days
    key += day
    key -= first_day
    key *= items
    key += item
    return np.argsort(key, kind="stable")


def median_unit_price(
    item: NDArray[np.integer], price: NDArray[np.floating], item_count: int
) -> NDArray[np.float64]:
    """Median unit price paid per item index over purchase rows; 0 for items never bought."""
    out = np.zeros(item_count, dtype=np.float64)
    if item.size:
        medians = pd.Series(np.asarray(price, dtype=np.float64)).groupby(item).median()
        out[np.asarray(medians.index, dtype=np.int64)] = np.asarray(medians, dtype=np.float64)
    return out


def assemble(
    name: str,
    customer_ids: tuple[str, ...],
    items: Items,
    customer: NDArray[np.integer],
    item: NDArray[np.integer],
    day: NDArray[np.integer],
    quantity: NDArray[np.floating],
    spend: NDArray[np.floating],
) -> Transactions:
    """Transactions from per-row codes, merging same-day rows of one customer and item."""
    c, i, d, q, p = merge_same_day(customer, item, day, quantity, spend)
    # merge_same_day already sorts by (customer, day, item).
    return Transactions(name, customer_ids, items, c, i, d, q, p)


def first_text_per_item(
    item: NDArray[np.integer],
    codes: NDArray[np.int32],
    texts: NDArray[np.object_],
    item_count: int,
    default: list[str],
) -> tuple[str, ...]:
    """Per item index, the first non-empty text in row order (row r's text is
    texts[codes[r]], none where the code is -1), else `default[index]`."""
    out = list(default)
    filled = (codes >= 0) & (texts != "")[codes]
    rows = np.flatnonzero(filled & (item >= 0) & (item < item_count))
    items, first = np.unique(item[rows], return_index=True)
    for index, code in zip(items.tolist(), codes[rows[first]].tolist(), strict=True):
        out[index] = texts[code]
    return tuple(out)


# --- users' files ---------------------------------------------------------------------------


def load_file(path: Path) -> Transactions:
    """Purchases from a user's .csv, .csv.gz or .parquet file (see the module docstring); the
    data set is named after the file (without its suffix)."""
    path = Path(path)
    suffix = next((s for s in SUFFIXES if path.name.lower().endswith(s)), None)
    if suffix is None:
        raise InvalidArgument.single(
            "path", f"{path}: unsupported file type; expected one of {', '.join(SUFFIXES)}"
        )
    if not path.is_file():
        raise InvalidArgument.single("path", f"{path} does not exist or is not a file")
    is_csv = suffix != ".parquet"
    name = path.name[: -len(suffix)] or path.name
    # The frame is passed, not kept, so that _from_frame can free it before the merge.
    return _from_frame(
        name,
        _read(path, is_csv),
        row_label="line" if is_csv else "row",
        first_row=2 if is_csv else 1,
    )


def _read(path: Path, is_csv: bool) -> Any:
    try:
        if is_csv:
            return pd.read_csv(
                path,
                dtype=str,
                keep_default_na=False,
                na_filter=False,
                encoding="utf-8-sig",
                compression="infer",
            )
        return _read_parquet(path)
    except pd.errors.EmptyDataError:
        raise InvalidArgument.single("path", f"{path} is empty") from None
    except (ValueError, OSError, EOFError, zlib.error) as exc:
        kind = "CSV" if is_csv else "Parquet"
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InvalidArgument.single(
            "path", f"{path} is not a readable {kind} file: {detail}"
        ) from None


def _read_parquet(path: Path) -> Any:
    """The loader's columns of a Parquet file (a file without a required one is refused before
    its rows are read), text columns as pandas Categoricals of the file's dictionary codes."""
    schema = pq.read_schema(path)
    columns = _columns(schema.names)
    text = {
        columns[column]
        for column in _TEXT_COLUMNS
        if column in columns
        and (
            pa.types.is_string(schema.field(columns[column]).type)
            or pa.types.is_large_string(schema.field(columns[column]).type)
        )
    }
    table = pq.read_table(
        path,
        columns=list(columns.values()),
        read_dictionary=sorted(text),
        use_pandas_metadata=True,
    )
    # Each Arrow column is freed as soon as it is converted (the table is not used again).
    return table.to_pandas(self_destruct=True, split_blocks=True)


def _columns(names: Any) -> dict[str, Any]:
    """The file's name of each of the loader's columns present, matched without regard to
    case or surrounding spaces; InvalidArgument naming every missing required column."""
    found = {str(name).strip().lower(): name for name in names}
    missing = [c for c in REQUIRED_COLUMNS if c not in found]
    if missing:
        raise InvalidArgument(
            [
                FieldViolation(c, f"required column is missing (found: {sorted(found) or 'none'})")
                for c in missing
            ]
        )
    return {c: found[c] for c in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS) if c in found}


def _from_frame(name: str, frame: Any, *, row_label: str, first_row: int) -> Transactions:
    columns = _columns(frame.columns)
    if len(frame) == 0:
        raise InvalidArgument.single("path", "the file has no purchase rows")
    errors = Collector()
    rows = _RowNamer(row_label, first_row)

    customer, customer_uniques = _text(
        frame[columns["customer_id"]], "customer_id", MAX_ID_CHARS, True, errors, rows
    )
    item, item_uniques = _text(
        frame[columns["item_id"]], "item_id", MAX_ID_CHARS, True, errors, rows
    )
    day = _days(frame[columns["date"]], errors, rows)
    quantity = _numbers(frame[columns["quantity"]], "quantity", errors, rows, allow_zero=False)
    price = _numbers(frame[columns["price"]], "price", errors, rows, allow_zero=True)
    limits = {
        "item_text": MAX_NAME_CHARS,
        "category": MAX_CATEGORY_CHARS,
        "department": MAX_CATEGORY_CHARS,
    }
    optional = {
        column: _text(frame[columns[column]], column, limits[column], False, errors, rows)
        for column in OPTIONAL_COLUMNS
        if column in columns
    }
    del frame  # its columns are read: free them before the merge
    errors.raise_if_any()

    item_list = [str(u) for u in item_uniques]
    n_items = len(item_list)
    empty = [""] * n_items
    texts = {
        column: first_text_per_item(
            item, codes, uniques, n_items, item_list if column == "item_text" else empty
        )
        for column, (codes, uniques) in optional.items()
    }
    del optional
    items = Items(
        tuple(item_list),
        texts.get("item_text", tuple(item_list)),
        texts.get("category", tuple(empty)),
        texts.get("department", tuple(empty)),
        median_unit_price(item, price, n_items),
    )
    return assemble(
        name,
        tuple(str(u) for u in customer_uniques),
        items,
        customer,
        item,
        day,
        quantity,
        quantity * price,
    )


class _RowNamer:
    """Names offending rows the way the user sees them (file lines for CSV)."""

    def __init__(self, label: str, first_row: int) -> None:
        self.label = label
        self.first_row = first_row

    def __call__(self, bad: NDArray[np.bool_]) -> str:
        positions = np.flatnonzero(bad)
        shown = ", ".join(str(int(p) + self.first_row) for p in positions[:_SHOWN_ROWS])
        more = positions.size - _SHOWN_ROWS
        plural = "s" if positions.size > 1 else ""
        return f"{self.label}{plural} {shown}" + (f" (and {more} more)" if more > 0 else "")


def _text(
    series: Any, column: str, max_chars: int, required: bool, errors: Collector, rows: _RowNamer
) -> tuple[NDArray[np.int32], NDArray[np.object_]]:
    """(per-row codes, sorted distinct texts): values stripped, '' where missing, integral
    floats without their '.0'. The checks run on the distinct values only, so a file of
    millions of rows with thousands of ids costs one hashing pass (of the codes, for a
    Categorical)."""
    codes, distinct = pd.factorize(series, use_na_sentinel=True)
    values = pd.Series(distinct)
    if pd.api.types.is_float_dtype(values.dtype):
        values = values.astype("Int64").astype(str) if _integral(values) else values.astype(str)
    else:
        values = values.astype(str)
    # Code -1 (missing) picks the appended "".
    text = np.append(np.asarray(values.str.strip(), dtype=object), "")
    blank = text == ""
    if required and blank[codes].any():
        errors.add(column, f"empty at {rows(blank[codes])}")
    too_long = np.asarray(pd.Series(text).str.len() > max_chars, dtype=bool)
    if too_long[codes].any():
        errors.add(column, f"longer than {max_chars} characters at {rows(too_long[codes])}")
    # Values equal once stripped (" a" and "a") become one; "" only when a value is missing.
    used = text if (codes < 0).any() else text[:-1]
    merged, uniques = pd.factorize(used, sort=True)
    merged = np.append(merged, -1) if used.size < text.size else merged
    return merged.astype(np.int32)[codes], np.asarray(uniques, dtype=object)


def _integral(series: Any) -> bool:
    values = np.asarray(series.dropna(), dtype=np.float64)
    return bool(np.all(np.isfinite(values) & (values == np.round(values))))


def _numbers(
    series: Any, column: str, errors: Collector, rows: _RowNamer, *, allow_zero: bool
) -> NDArray[np.float64]:
    if pd.api.types.is_bool_dtype(series.dtype):
        errors.add(column, "must be numbers, not true/false")
        return np.zeros(len(series))
    if pd.api.types.is_numeric_dtype(series.dtype):
        values = np.asarray(series.to_numpy(dtype=np.float64, na_value=np.nan))
        blank = np.isnan(values)
        unparsable = np.zeros(values.size, dtype=bool)
    else:
        text = series.astype(str).str.strip()
        blank = np.asarray(series.isna() | (text == ""), dtype=bool)
        values = np.asarray(
            pd.to_numeric(text.where(~blank, "nan"), errors="coerce"), dtype=np.float64
        )
        unparsable = np.isnan(values) & ~blank
        values = values.copy()
    if blank.any():
        errors.add(column, f"empty at {rows(blank)}")
    if unparsable.any():
        errors.add(column, f"not a number at {rows(unparsable)}")
    infinite = np.isinf(values)
    if infinite.any():
        errors.add(column, f"not a finite number at {rows(infinite)}")
    with np.errstate(invalid="ignore"):
        out_of_range = (values < 0) if allow_zero else (values <= 0)
    if out_of_range.any():
        bound = "negative (must be >= 0)" if allow_zero else "not positive (must be > 0)"
        errors.add(column, f"{bound} at {rows(out_of_range)}")
    return values


def _days(series: Any, errors: Collector, rows: _RowNamer) -> NDArray[np.int32]:
    """Days since 1970-01-01 of the date part as written."""
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        stamps = (
            series.dt.tz_localize(None) if isinstance(series.dtype, pd.DatetimeTZDtype) else series
        )
        blank = np.asarray(stamps.isna(), dtype=bool)
        bad = np.zeros(blank.size, dtype=bool)
        dates = stamps.dt.floor("D")
    else:
        # Parsed once per distinct text: a purchase file has millions of rows but few dates.
        codes, distinct = pd.factorize(series, use_na_sentinel=True)
        text = pd.Series(np.append(np.asarray(distinct, dtype=object), "")).astype(str).str.strip()
        shaped = np.asarray(text.str.match(_ISO_DATE), dtype=bool)
        blank_text = np.asarray(text == "", dtype=bool)
        whole = pd.to_datetime(
            text.where(shaped & ~blank_text, ""), format="ISO8601", errors="coerce", utc=True
        )
        parsed = pd.to_datetime(
            text.str.slice(0, 10).where(shaped, ""), format="%Y-%m-%d", errors="coerce"
        )
        blank = blank_text[codes]
        bad = (~blank_text & np.asarray(whole.isna() | parsed.isna(), dtype=bool))[codes]
        dates = pd.Series(np.asarray(parsed)[codes])
    if blank.any():
        errors.add("date", f"empty at {rows(blank)}")
    if bad.any():
        errors.add("date", f"not an ISO date (YYYY-MM-DD) or date-time at {rows(bad)}")
    values = np.asarray(dates.to_numpy(dtype="datetime64[D]", na_value=np.datetime64("NaT")))
    return np.where(np.isnat(values), 0, values.astype(np.int64)).astype(np.int32)
