"""load_dataset: known names, file paths, and a clear error for anything else."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pantree_common.datasets import completejourney, tafeng
from pantree_common.datasets.registry import load_dataset
from pantree_common.datasets.transactions import Items, Transactions
from pantree_common.errors import InvalidArgument

EMPTY = Transactions.build(
    "stub",
    [],
    Items((), (), (), (), np.zeros(0)),
    np.zeros(0, dtype=np.int32),
    np.zeros(0, dtype=np.int32),
    np.zeros(0, dtype=np.int32),
    np.zeros(0),
    np.zeros(0),
)


def test_known_names_dispatch_to_their_loaders(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(completejourney, "load_completejourney", lambda: EMPTY)
    monkeypatch.setattr(tafeng, "load_tafeng", lambda: EMPTY)
    assert load_dataset("completejourney") is EMPTY
    assert load_dataset(" TaFeng ") is EMPTY


def test_paths_load_files(tmp_path: Path) -> None:
    path = tmp_path / "mine.csv"
    path.write_text("customer_id,item_id,date,quantity,price\na,x,2024-01-01,1,2\n")
    assert load_dataset(str(path)).name == "mine"
    with pytest.raises(InvalidArgument, match="does not exist"):
        load_dataset(str(tmp_path / "gone.parquet"))


def test_unknown_names_list_the_choices() -> None:
    with pytest.raises(InvalidArgument) as caught:
        load_dataset("instacart")
    (violation,) = caught.value.violations
    assert violation.field == "dataset"
    assert "completejourney, tafeng" in violation.description
    assert ".csv, .csv.gz, .parquet" in violation.description
