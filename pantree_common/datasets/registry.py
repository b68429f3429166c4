"""One entry point for every data set: a known name or the path of a user's file.

Loaders are imported on first use, so this module needs no pandas until a data set is loaded.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import cast

from pantree_common.datasets.transactions import Transactions
from pantree_common.errors import FailedPrecondition, InvalidArgument

DATASETS: dict[str, tuple[str, str]] = {
    "completejourney": ("pantree_common.datasets.completejourney", "load_completejourney"),
    "tafeng": ("pantree_common.datasets.tafeng", "load_tafeng"),
}
"""Data set name -> (module, loader function taking no argument)."""
FILE_SUFFIXES = (".csv", ".csv.gz", ".parquet")


def load_dataset(name_or_path: str) -> Transactions:
    """ "completejourney", "tafeng", or the path of a .csv, .csv.gz or .parquet file of
    purchases (see `pantree_common.datasets.files`)."""
    key = name_or_path.strip()
    try:
        if key.lower() in DATASETS:
            return _loader(*DATASETS[key.lower()])()
        if _looks_like_path(key):
            load_file = cast(
                Callable[[Path], Transactions],
                _loader("pantree_common.datasets.files", "load_file"),
            )
            return load_file(Path(key).expanduser())
    except ImportError as exc:
        raise FailedPrecondition(
            f"loading data set {key!r} needs a missing package ({exc}): install the evaluation "
            "extra (pip install 'pantree[eval]')"
        ) from None
    raise InvalidArgument.single(
        "dataset",
        f"unknown data set {name_or_path!r}: choose {', '.join(DATASETS)} or the path of a "
        f"{', '.join(FILE_SUFFIXES)} file",
    )


def _loader(module: str, function: str) -> Callable[[], Transactions]:
    return cast(Callable[[], Transactions], getattr(importlib.import_module(module), function))


def _looks_like_path(text: str) -> bool:
    return (
        any(text.lower().endswith(s) for s in FILE_SUFFIXES)
        or "/" in text
        or "\\" in text
        or Path(text).expanduser().exists()
    )
