"""The request and response of the model server's `POST /invocations`: one schema for the
SageMaker endpoint and the recommendation step, so the remote and in-process paths cannot drift.

Request, `application/json` (UTF-8):

    {"customers": [{"customer_id": "c-1", "as_of_epoch_day": 20089, "items": [
        {"product_id": "p-1001", "category": "dairy", "department": "grocery",
         "unit_price_usd": 3.89, "purchase_days": 4, "intervals_days": [7, 7, 8],
         "mean_interval_days": 7.33, "median_interval_days": 7, "std_interval_days": 0.58,
         "coefficient_of_variation": 0.08, "trend_slope_days": 0.5,
         "days_since_last_purchase": 3, "recency_weight": 1, "last_purchase_epoch_day": 20086,
         "quantity_per_day": 0.27, "total_quantity": 6, "mean_unit_price_usd": 3.79,
         "confidence": 71.5, "next_purchase_epoch_day": 20093}]}]}

Each item carries a product's `pantree.domain.v1.ItemStatistics` fields (same names and units:
days are whole days, dates are days since 1970-01-01, prices US dollars) plus the product's
category, department and shelf price. Every field is required except `category` and
`department` (default ""), `unit_price_usd` (0: unknown, the mean price paid stands in), and
`confidence` and `next_purchase_epoch_day` (default 0; only the heuristic reads them). Unknown
fields are refused. `intervals_days` holds purchase_days - 1 gaps of 1 day or more, and the first
purchase (last purchase - their sum) may not fall before 1970-01-01.

`text/csv` carries the same request as one row per item: a header row naming the columns
(`customer_id`, `as_of_epoch_day` and the item fields above, any order, optional ones may be
left out), `intervals_days` as gaps separated by spaces, and the rows of one customer next to
each other (consecutive rows with the same customer_id form one customer).

Response, `application/json`:

    {"scored_by": "model", "model": {"dataset": ..., "training_cutoff_epoch_day": ...},
     "customers": [{"customer_id": "c-1", "items": [
        {"product_id": "p-1001", "score": 0.93, "confidence": 92.8, "p_rebuy": 0.928,
         "interval_days": 7.4}]}]}

Customers and items come back in request order. `scored_by` is "model" (`model` then describes
the trained model) or "heuristic" (no model loaded; `model` is null): with the model, `p_rebuy` is
the calibrated probability of a purchase within the model's horizon, `confidence` = p_rebuy x
100, `interval_days` the days from the last purchase to the next expected one, `score` the
ranking score (higher is better); with the heuristic, they are the statistics' own (`p_rebuy` =
confidence / 100, `interval_days` = next_purchase_epoch_day - last_purchase_epoch_day, 0 without
a rhythm).

Limits: at most MAX_CUSTOMERS customers, MAX_PRODUCTS items per customer and MAX_ITEMS items per
request; numbers finite and in the ranges of `_ITEM_NUMBERS` / `_RESPONSE_NUMBERS`; product ids
unique within a customer. A bad request raises InvalidArgument naming the JSON path of the first
bad field (`customers[0].items[3].recency_weight`, or `line 5: recency_weight` for CSV).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain, pairwise
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pantree.domain.v1 import analysis_pb2, product_pb2

from pantree_common.domain import dates
from pantree_common.domain.history import (
    MAX_CATEGORY_CHARS,
    MAX_EVENTS,
    MAX_ID_CHARS,
    MAX_PRODUCTS,
)
from pantree_common.errors import InvalidArgument, PantreeError
from services.recommendation.features import (
    COLD_START_PURCHASE_DAYS,
    STATISTICS_FIELDS,
    Columns,
    Priors,
)
from services.recommendation.model import FORMAT_VERSION, Predictions, SubscriptionModel
from services.recommendation.scoring import heuristic

JSON = "application/json"
CSV = "text/csv"
MAX_CUSTOMERS = 1_000
MAX_ITEMS = 20_000
"""Items per request, all customers together (a 6 MB body holds about 15,000)."""
MAX_EPOCH_DAY = dates.to_epoch_day(dt.date.max)
SCORED_BY_MODEL = "model"
SCORED_BY_HEURISTIC = "heuristic"


class UnsupportedMediaType(PantreeError):
    """The body is in a format the model server does not read (HTTP 415)."""


@dataclass(frozen=True)
class _Number:
    """A numeric field: its range, whether it must be whole, its default when optional."""

    name: str
    low: float
    high: float = math.inf
    whole: bool = False
    default: float | None = None


_ITEM_NUMBERS: tuple[_Number, ...] = (
    _Number("unit_price_usd", 0, default=0),
    _Number("purchase_days", 1, MAX_EVENTS, whole=True),
    _Number("mean_interval_days", 0, MAX_EPOCH_DAY),
    _Number("median_interval_days", 0, MAX_EPOCH_DAY),
    _Number("std_interval_days", 0, MAX_EPOCH_DAY),
    _Number("coefficient_of_variation", 0),
    _Number("trend_slope_days", -math.inf),
    _Number("days_since_last_purchase", 0, MAX_EPOCH_DAY, whole=True),
    _Number("recency_weight", 0, 1),
    _Number("last_purchase_epoch_day", 0, MAX_EPOCH_DAY, whole=True),
    _Number("quantity_per_day", 0),
    _Number("total_quantity", 0),
    _Number("mean_unit_price_usd", 0),
    _Number("confidence", 0, 100, default=0),
    _Number("next_purchase_epoch_day", 0, MAX_EPOCH_DAY, whole=True, default=0),
)
_INTERVAL = _Number("intervals_days", 1, MAX_EPOCH_DAY)
_AS_OF = _Number("as_of_epoch_day", 0, MAX_EPOCH_DAY, whole=True)
_TEXTS: tuple[tuple[str, int, bool], ...] = (
    ("product_id", MAX_ID_CHARS, True),
    ("category", MAX_CATEGORY_CHARS, False),
    ("department", MAX_CATEGORY_CHARS, False),
)
"""Text fields of an item: name, most characters, whether required (and not blank)."""
ITEM_FIELDS: tuple[str, ...] = (
    *(name for name, _, _ in _TEXTS),
    "intervals_days",
    *(number.name for number in _ITEM_NUMBERS),
)
_ITEM_FIELD_SET = frozenset(ITEM_FIELDS)
_REQUIRED_ITEM_FIELDS = frozenset(
    ["product_id", "intervals_days"]
    + [number.name for number in _ITEM_NUMBERS if number.default is None]
)
_CUSTOMER_FIELDS = frozenset({"customer_id", "as_of_epoch_day", "items"})
CSV_COLUMNS: tuple[str, ...] = ("customer_id", "as_of_epoch_day", *ITEM_FIELDS)
_RESULTS = ("score", "confidence", "p_rebuy", "interval_days")
_RESPONSE_NUMBERS: tuple[_Number, ...] = (
    _Number("score", 0),
    _Number("confidence", 0, 100),
    _Number("p_rebuy", 0, 1),
    _Number("interval_days", 0, MAX_EPOCH_DAY),
)
_RESPONSE_FIELDS = frozenset({"scored_by", "model", "customers"})
_RESPONSE_CUSTOMER_FIELDS = frozenset({"customer_id", "items"})
_RESPONSE_ITEM_FIELDS = frozenset({"product_id", *_RESULTS})

Where = Callable[[int, str], str]
"""The path of a field of row `row` (an item, or a customer), for error messages."""


def _bad(path: str, why: str) -> InvalidArgument:
    return InvalidArgument.single(path, why)


def _kind(value: Any) -> str:
    """The JSON name of a value's type, for error messages."""
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    return names.get(type(value), "a number")


@dataclass(frozen=True, eq=False)
class InvocationRequest:
    """A validated batch of customers and their candidate items, in columns (one row per item,
    the rows of customer c at customer_offsets[c]:customer_offsets[c + 1])."""

    customer_ids: tuple[str, ...]
    as_of_epoch_day: NDArray[np.int64]
    """One day per customer."""
    customer_offsets: NDArray[np.int64]
    product_id: NDArray[np.str_]
    category: NDArray[np.str_]
    department: NDArray[np.str_]
    numbers: Mapping[str, NDArray[np.float64]]
    """Every numeric item field (`ITEM_FIELDS` less the texts and intervals), one value per row."""
    intervals_days: NDArray[np.float64]
    interval_offsets: NDArray[np.int64]
    """The gaps of row r are intervals_days[interval_offsets[r]:interval_offsets[r + 1]]."""

    def columns(self, priors: Priors) -> Columns:
        """The feature columns (features.py) of every row, products encoded by `priors`."""
        product_code, category_code, department_code = priors.encode(
            self.product_id, self.category, self.department
        )
        columns: dict[str, NDArray[Any]] = {name: self.numbers[name] for name in STATISTICS_FIELDS}
        columns.update(
            customer_offsets=self.customer_offsets,
            as_of_epoch_day=np.repeat(self.as_of_epoch_day, np.diff(self.customer_offsets)),
            intervals_days=self.intervals_days,
            interval_offsets=self.interval_offsets,
            product_code=product_code,
            category_code=category_code,
            department_code=department_code,
            unit_price_usd=self.numbers["unit_price_usd"],
        )
        return columns

    def to_json(self) -> bytes:
        """The request as the model server reads it (`application/json`)."""
        customers = []
        gaps = self.intervals_days.tolist()
        interval_offsets = self.interval_offsets.tolist()
        numbers = {
            n.name: (self.numbers[n.name].astype(np.int64) if n.whole else self.numbers[n.name])
            for n in _ITEM_NUMBERS
        }
        values = {name: column.tolist() for name, column in numbers.items()}
        offsets = self.customer_offsets.tolist()
        for c, customer_id in enumerate(self.customer_ids):
            items = []
            for row in range(offsets[c], offsets[c + 1]):
                item: dict[str, Any] = {
                    "product_id": str(self.product_id[row]),
                    "category": str(self.category[row]),
                    "department": str(self.department[row]),
                    "intervals_days": gaps[interval_offsets[row] : interval_offsets[row + 1]],
                }
                item.update((name, column[row]) for name, column in values.items())
                items.append(item)
            customers.append(
                {
                    "customer_id": customer_id,
                    "as_of_epoch_day": int(self.as_of_epoch_day[c]),
                    "items": items,
                }
            )
        return _dump({"customers": customers})


@dataclass(frozen=True, eq=False)
class InvocationResponse:
    """What a scorer said of every row of a request, in the request's order."""

    scored_by: str
    """SCORED_BY_MODEL or SCORED_BY_HEURISTIC."""
    model: Mapping[str, Any] | None
    """The model's description (model_description), None for the heuristic."""
    customer_ids: tuple[str, ...]
    customer_offsets: NDArray[np.int64]
    product_id: NDArray[np.str_]
    score: NDArray[np.float64]
    confidence: NDArray[np.float64]
    p_rebuy: NDArray[np.float64]
    interval_days: NDArray[np.float64]

    def to_json(self) -> bytes:
        """The response as the model server writes it (`application/json`)."""
        results = [getattr(self, name).tolist() for name in _RESULTS]
        product_ids = self.product_id.tolist()
        offsets = self.customer_offsets.tolist()
        customers = [
            {
                "customer_id": customer_id,
                "items": [
                    {
                        "product_id": product_ids[row],
                        **{
                            name: column[row]
                            for name, column in zip(_RESULTS, results, strict=True)
                        },
                    }
                    for row in range(offsets[c], offsets[c + 1])
                ],
            }
            for c, customer_id in enumerate(self.customer_ids)
        ]
        return _dump({"scored_by": self.scored_by, "model": self.model, "customers": customers})


def _dump(document: Mapping[str, Any]) -> bytes:
    # allow_nan=False: a NaN here is a bug, and other languages' JSON parsers reject it anyway.
    return json.dumps(document, separators=(",", ":"), allow_nan=False).encode("utf-8")


# --- from and to the protobufs ---------------------------------------------------------------


def request_from_analyses(
    analyses: Sequence[analysis_pb2.HistoryAnalysis],
    products: Mapping[str, product_pb2.Product],
) -> InvocationRequest:
    """The request scoring every item of every analysis; `products` maps product_id to its
    Product (an unknown id gets no category, department or price). Not validated: the
    recommendation step validated the analyses already."""
    items = [item for analysis in analyses for item in analysis.items]
    missing = product_pb2.Product()
    described = [products.get(item.product_id, missing) for item in items]
    numbers = {
        n.name: np.array([getattr(item, n.name) for item in items], dtype=np.float64)
        for n in _ITEM_NUMBERS
        if n.name != "unit_price_usd"
    }
    numbers["unit_price_usd"] = np.array([p.unit_price_usd for p in described], dtype=np.float64)
    gaps = [len(item.intervals_days) for item in items]
    return InvocationRequest(
        customer_ids=tuple(analysis.customer_id for analysis in analyses),
        as_of_epoch_day=np.array([a.as_of_epoch_day for a in analyses], dtype=np.int64),
        customer_offsets=np.concatenate(
            [[0], np.cumsum([len(a.items) for a in analyses], dtype=np.int64)]
        ).astype(np.int64),
        product_id=np.array([item.product_id for item in items], dtype=np.str_),
        category=np.array([p.category for p in described], dtype=np.str_),
        department=np.array([p.department for p in described], dtype=np.str_),
        numbers=numbers,
        intervals_days=np.array(
            [gap for item in items for gap in item.intervals_days], dtype=np.float64
        ),
        interval_offsets=np.concatenate([[0], np.cumsum(gaps, dtype=np.int64)]).astype(np.int64),
    )


def predictions(response: InvocationResponse, request: InvocationRequest) -> list[Predictions]:
    """One Predictions per customer of the request (what SubscriptionModel.predict_analysis
    returns for it), from a model's response."""
    cold = request.numbers["purchase_days"] < COLD_START_PURCHASE_DAYS
    offsets = response.customer_offsets.tolist()
    return [
        Predictions(
            p_rebuy=response.p_rebuy[start:end],
            confidence=response.confidence[start:end],
            interval_days=response.interval_days[start:end],
            score=response.score[start:end],
            cold_start=cold[start:end],
        )
        for start, end in pairwise(offsets)
    ]


def model_description(model: SubscriptionModel) -> dict[str, Any]:
    """What a response says of the model that scored it."""
    return {
        "dataset": model.info.dataset,
        "training_cutoff_epoch_day": model.info.training_cutoff_epoch_day,
        "training_data_sha256": model.info.data_sha256,
        "horizon_days": model.horizon_days,
        "format_version": FORMAT_VERSION,
    }


# --- scoring ---------------------------------------------------------------------------------


def invoke(model: SubscriptionModel | None, request: InvocationRequest) -> InvocationResponse:
    """Score a request: one feature matrix for the whole batch and one call of each estimator;
    without a model, the statistics' heuristic."""
    if model is None:
        return _heuristic(request)
    predicted = model.predict(request.columns(model.priors))
    return InvocationResponse(
        scored_by=SCORED_BY_MODEL,
        model=model_description(model),
        customer_ids=request.customer_ids,
        customer_offsets=request.customer_offsets,
        product_id=request.product_id,
        score=predicted.score,
        confidence=predicted.confidence,
        p_rebuy=predicted.p_rebuy,
        interval_days=predicted.interval_days,
    )


def _heuristic(request: InvocationRequest) -> InvocationResponse:
    """scoring.heuristic for every row, so the endpoint's heuristic is the in-process one."""
    numbers = request.numbers
    last = numbers["last_purchase_epoch_day"].tolist()
    judged = [
        heuristic(
            analysis_pb2.ItemStatistics(
                confidence=confidence, recency_weight=recency, next_purchase_epoch_day=int(day)
            )
        )
        for confidence, recency, day in zip(
            numbers["confidence"].tolist(),
            numbers["recency_weight"].tolist(),
            numbers["next_purchase_epoch_day"].tolist(),
            strict=True,
        )
    ]
    confidence = np.array([j.confidence for j in judged], dtype=np.float64)
    return InvocationResponse(
        scored_by=SCORED_BY_HEURISTIC,
        model=None,
        customer_ids=request.customer_ids,
        customer_offsets=request.customer_offsets,
        product_id=request.product_id,
        score=np.array([j.score for j in judged], dtype=np.float64),
        confidence=confidence,
        p_rebuy=confidence / 100,
        interval_days=np.array(
            [
                j.next_purchase_epoch_day - day if j.next_purchase_epoch_day else 0
                for j, day in zip(judged, last, strict=True)
            ],
            dtype=np.float64,
        ).clip(0),
    )


# --- parsing ---------------------------------------------------------------------------------


def media_type(content_type: str | None) -> str:
    """`application/json; charset=utf-8` as `application/json`."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def parse_request(body: bytes, content_type: str | None) -> InvocationRequest:
    """A request from its body; raises UnsupportedMediaType for a type other than JSON or CSV,
    InvalidArgument naming the first bad field otherwise."""
    kind = media_type(content_type)
    if kind not in (JSON, CSV):
        raise UnsupportedMediaType(f"Content-Type must be {JSON} or {CSV}, got {content_type!r}")
    charset = (content_type or "").partition("charset=")[2].strip().strip('"').lower()
    if charset not in ("", "utf-8", "utf8"):
        raise UnsupportedMediaType(f"the body must be UTF-8, got charset {charset!r}")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _bad("body", f"is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    raw = _raw_from_json(text) if kind == JSON else _raw_from_csv(text)
    return raw.validate()


def _load_json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
        raise _bad("body", f"is not JSON: {exc.msg} ({where})") from None
    except RecursionError:
        raise _bad("body", "is nested too deeply") from None


def _object(value: Any, path: str, allowed: frozenset[str], required: frozenset[str]) -> None:
    """`value` must be an object with only `allowed` keys and every `required` one."""
    if not isinstance(value, dict):
        raise _bad(path or "body", f"must be an object, got {_kind(value)}")
    keys = value.keys()
    if keys <= allowed and required <= keys:
        return
    prefix = f"{path}." if path else ""
    unknown = sorted(keys - allowed)
    if unknown:
        raise _bad(prefix + unknown[0], "is not a known field")
    raise _bad(prefix + min(required - keys), "is required")


def _array(value: Any, path: str, most: int, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise _bad(path, f"must be an array, got {_kind(value)}")
    if len(value) > most:
        raise _bad(path, f"at most {most:,} {what}, got {len(value):,}")
    return value


@dataclass
class _Raw:
    """A request as parsed, before its values are checked: per customer and per row lists."""

    customer_ids: list[Any]
    as_of: list[Any]
    offsets: list[int]
    fields: dict[str, list[Any]]
    """Every item field but intervals_days, one value per row."""
    intervals: list[Any]
    row_path: Where
    customer_path: Where

    def validate(self) -> InvocationRequest:
        for c, customer_id in enumerate(self.customer_ids):
            _text(customer_id, self.customer_path(c, "customer_id"), MAX_ID_CHARS, required=False)
        as_of = _numbers(self.as_of, _AS_OF, self.customer_path).astype(np.int64)
        texts = {
            name: _texts(self.fields[name], name, most, required, self.row_path)
            for name, most, required in _TEXTS
        }
        offsets = np.asarray(self.offsets, dtype=np.int64)
        _unique_per_customer(texts["product_id"], offsets, self.row_path)
        numbers = {n.name: _numbers(self.fields[n.name], n, self.row_path) for n in _ITEM_NUMBERS}
        intervals, interval_offsets = self._intervals(numbers)
        return InvocationRequest(
            customer_ids=tuple(self.customer_ids),
            as_of_epoch_day=as_of,
            customer_offsets=offsets,
            product_id=np.asarray(texts["product_id"], dtype=np.str_),
            category=np.asarray(texts["category"], dtype=np.str_),
            department=np.asarray(texts["department"], dtype=np.str_),
            numbers=numbers,
            intervals_days=intervals,
            interval_offsets=interval_offsets,
        )

    def _intervals(
        self, numbers: Mapping[str, NDArray[np.float64]]
    ) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
        """The gaps, flat, checked against purchase_days and the last purchase day."""
        if not set(map(type, self.intervals)) <= {list}:
            row, gaps = next((r, g) for r, g in enumerate(self.intervals) if type(g) is not list)
            raise _bad(self.row_path(row, "intervals_days"), f"must be an array, got {_kind(gaps)}")
        counts = np.array([len(gaps) for gaps in self.intervals], dtype=np.int64)
        interval_offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)

        def gap_path(index: int, name: str) -> str:
            row = int(np.searchsorted(interval_offsets, index, side="right")) - 1
            return f"{self.row_path(row, name)}[{index - interval_offsets[row]}]"

        flat = _numbers(list(chain.from_iterable(self.intervals)), _INTERVAL, gap_path)
        wrong = np.flatnonzero(counts != numbers["purchase_days"] - 1)
        if wrong.size:
            row = int(wrong[0])
            raise _bad(
                self.row_path(row, "intervals_days"),
                f"must hold purchase_days - 1 = {int(numbers['purchase_days'][row]) - 1} gaps, "
                f"got {counts[row]}",
            )
        row_of_gap = np.repeat(np.arange(counts.size), counts)
        span = np.bincount(row_of_gap, weights=flat, minlength=counts.size)
        early = np.flatnonzero(span > numbers["last_purchase_epoch_day"])
        if early.size:
            raise _bad(
                self.row_path(int(early[0]), "intervals_days"),
                "add up to more days than last_purchase_epoch_day: the first purchase would fall "
                "before 1970-01-01",
            )
        return flat, interval_offsets


def _raw_from_json(text: str) -> _Raw:
    document = _load_json(text)
    _object(document, "", frozenset({"customers"}), frozenset({"customers"}))
    customers = _array(document["customers"], "customers", MAX_CUSTOMERS, "customers")
    customer_ids, as_of, offsets = [], [], [0]
    fields: dict[str, list[Any]] = {name: [] for name in ITEM_FIELDS if name != "intervals_days"}
    defaults = {n.name: n.default for n in _ITEM_NUMBERS} | {"category": "", "department": ""}
    intervals: list[Any] = []
    for c, customer in enumerate(customers):
        path = f"customers[{c}]"
        _object(customer, path, _CUSTOMER_FIELDS, _CUSTOMER_FIELDS)
        customer_ids.append(customer["customer_id"])
        as_of.append(customer["as_of_epoch_day"])
        items = _array(customer["items"], f"{path}.items", MAX_PRODUCTS, "items")
        for i, item in enumerate(items):
            _object(item, f"{path}.items[{i}]", _ITEM_FIELD_SET, _REQUIRED_ITEM_FIELDS)
            for name, values in fields.items():
                values.append(item.get(name, defaults.get(name)))
            intervals.append(item["intervals_days"])
        offsets.append(offsets[-1] + len(items))
        if offsets[-1] > MAX_ITEMS:
            raise _bad(f"{path}.items", f"more than {MAX_ITEMS:,} items in all customers")
    customer_of = np.asarray(offsets)

    def row_path(row: int, name: str) -> str:
        c = int(np.searchsorted(customer_of, row, side="right")) - 1
        return f"customers[{c}].items[{row - offsets[c]}].{name}"

    return _Raw(
        customer_ids,
        as_of,
        offsets,
        fields,
        intervals,
        row_path,
        lambda c, n: f"customers[{c}].{n}",
    )


def _raw_from_csv(text: str) -> _Raw:
    reader = csv.reader(io.StringIO(text, newline=""))
    header = [name.strip() for name in next(reader, [])]
    if not header:
        raise _bad("line 1", "must name the columns")
    unknown = [name for name in header if name not in CSV_COLUMNS]
    if unknown:
        raise _bad(f"line 1: {unknown[0]}", "is not a known column")
    if len(set(header)) != len(header):
        raise _bad("line 1", "names a column twice")
    absent = sorted((_REQUIRED_ITEM_FIELDS | {"customer_id", "as_of_epoch_day"}) - set(header))
    if absent:
        raise _bad(f"line 1: {absent[0]}", "is a required column")
    numeric = {n.name: n for n in _ITEM_NUMBERS}
    customer_ids: list[Any] = []
    as_of: list[Any] = []
    offsets = [0]
    customer_lines: list[int] = []
    row_lines: list[int] = []
    fields: dict[str, list[Any]] = {name: [] for name in ITEM_FIELDS if name != "intervals_days"}
    intervals: list[Any] = []
    for cells in reader:
        line = reader.line_num
        if not cells:
            continue
        if len(cells) != len(header):
            raise _bad(f"line {line}", f"has {len(cells)} cells, the header {len(header)}")
        if len(row_lines) >= MAX_ITEMS:
            raise _bad(f"line {line}", f"more than {MAX_ITEMS:,} items")
        row = dict(zip(header, cells, strict=True))
        day = _csv_number(row["as_of_epoch_day"], _AS_OF, line)
        if not customer_ids or row["customer_id"] != customer_ids[-1]:
            if len(customer_ids) >= MAX_CUSTOMERS:
                raise _bad(f"line {line}", f"more than {MAX_CUSTOMERS:,} customers")
            customer_ids.append(row["customer_id"])
            as_of.append(day)
            customer_lines.append(line)
            offsets.append(offsets[-1])
        elif day != as_of[-1]:
            raise _bad(f"line {line}: as_of_epoch_day", "differs from the customer's earlier rows")
        offsets[-1] += 1
        row_lines.append(line)
        for name, values in fields.items():
            cell = row.get(name, "")
            values.append(_csv_number(cell, numeric[name], line) if name in numeric else cell)
        intervals.append(_csv_gaps(row["intervals_days"], line))
    return _Raw(
        customer_ids,
        as_of,
        offsets,
        fields,
        intervals,
        lambda r, name: f"line {row_lines[r]}: {name}",
        lambda c, name: f"line {customer_lines[c]}: {name}",
    )


def _csv_number(cell: str, spec: _Number, line: int) -> float | None:
    """A CSV cell as a number; an empty cell is the field's default (None when required)."""
    cell = cell.strip()
    if not cell:
        if spec.default is None:
            raise _bad(f"line {line}: {spec.name}", "is required")
        return spec.default
    try:
        return float(cell)
    except ValueError:
        raise _bad(f"line {line}: {spec.name}", f"must be a number, got {cell[:20]!r}") from None


def _csv_gaps(cell: str, line: int) -> list[float]:
    try:
        return [float(gap) for gap in cell.split()]
    except ValueError:
        raise _bad(f"line {line}: intervals_days", "must be numbers separated by spaces") from None


# --- checks on columns -----------------------------------------------------------------------


def _text(value: Any, path: str, most: int, *, required: bool) -> str:
    if not isinstance(value, str):
        raise _bad(path, f"must be a string, got {_kind(value)}")
    if len(value) > most:
        raise _bad(path, f"at most {most} characters, got {len(value)}")
    if required and not value.strip():
        raise _bad(path, "must not be blank")
    return value


def _texts(values: list[Any], name: str, most: int, required: bool, where: Where) -> list[str]:
    """Every value a string of at most `most` characters (not blank when required)."""
    fine = set(map(type, values)) <= {str} and max(map(len, values), default=0) <= most
    if not (fine and (not required or all(value.strip() for value in values))):
        for row, value in enumerate(values):
            _text(value, where(row, name), most, required=required)
    return values


def _unique_per_customer(product_ids: list[str], offsets: NDArray[np.int64], where: Where) -> None:
    bounds = offsets.tolist()
    for start, end in pairwise(bounds):
        if len(set(product_ids[start:end])) != end - start:
            seen: set[str] = set()
            for row in range(start, end):
                if product_ids[row] in seen:
                    raise _bad(where(row, "product_id"), f"repeats {product_ids[row][:64]!r}")
                seen.add(product_ids[row])


def _numbers(values: list[Any], spec: _Number, where: Where) -> NDArray[np.float64]:
    """The values as floats, each a finite number in the spec's range (whole when it must be)."""
    if not set(map(type, values)) <= {int, float}:
        row, value = next((r, v) for r, v in enumerate(values) if type(v) not in (int, float))
        raise _bad(where(row, spec.name), f"must be a number, got {_kind(value)}")
    try:
        array = np.array(values, dtype=np.float64)
    except OverflowError:  # JSON integers may have any length: too long ones are out of range
        array = np.array([v if abs(v) < 2**1023 else math.inf for v in values], np.float64)
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(array) | (array < spec.low) | (array > spec.high)
        if spec.whole:
            bad |= array != np.floor(array)
    if bad.any():
        row = int(np.argmax(bad))
        raise _bad(where(row, spec.name), f"must be {_describe(spec)}, got {values[row]!r}")
    return array


def _describe(spec: _Number) -> str:
    what = "a finite whole number" if spec.whole else "a finite number"
    if spec.low == -math.inf:
        return what
    if spec.high == math.inf:
        return f"{what} >= {spec.low:g}"
    return f"{what} from {spec.low:g} to {spec.high:g}"


def parse_response(body: bytes, request: InvocationRequest) -> InvocationResponse:
    """A model server's answer to `request`, checked as strictly as a request: the customers and
    items in request order, every number finite and in range; raises InvalidArgument."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise _bad("body", "is not UTF-8") from None
    document = _load_json(text)
    _object(document, "", _RESPONSE_FIELDS, frozenset({"scored_by", "customers"}))
    scored_by = document["scored_by"]
    if scored_by not in (SCORED_BY_MODEL, SCORED_BY_HEURISTIC):
        raise _bad("scored_by", f"must be {SCORED_BY_MODEL!r} or {SCORED_BY_HEURISTIC!r}")
    model = document.get("model")
    if model is not None and not isinstance(model, dict):
        raise _bad("model", f"must be an object or null, got {_kind(model)}")
    customers = _array(document["customers"], "customers", len(request.customer_ids), "customers")
    if len(customers) != len(request.customer_ids):
        raise _bad("customers", f"must answer all {len(request.customer_ids)} customers")
    offsets = request.customer_offsets.tolist()
    results: dict[str, list[Any]] = {name: [] for name in _RESULTS}
    for c, customer in enumerate(customers):
        path = f"customers[{c}]"
        _object(customer, path, _RESPONSE_CUSTOMER_FIELDS, _RESPONSE_CUSTOMER_FIELDS)
        if customer["customer_id"] != request.customer_ids[c]:
            raise _bad(f"{path}.customer_id", "is not the request's customer at this position")
        expected = offsets[c + 1] - offsets[c]
        items = _array(customer["items"], f"{path}.items", expected, "items")
        if len(items) != expected:
            raise _bad(f"{path}.items", f"must answer all {expected} items")
        for i, item in enumerate(items):
            item_path = f"{path}.items[{i}]"
            _object(item, item_path, _RESPONSE_ITEM_FIELDS, _RESPONSE_ITEM_FIELDS)
            if item["product_id"] != request.product_id[offsets[c] + i]:
                raise _bad(f"{item_path}.product_id", "is not the request's item at this position")
            for name, values in results.items():
                values.append(item[name])

    def row_path(row: int, name: str) -> str:
        c = int(np.searchsorted(request.customer_offsets, row, side="right")) - 1
        return f"customers[{c}].items[{row - offsets[c]}].{name}"

    checked = {n.name: _numbers(results[n.name], n, row_path) for n in _RESPONSE_NUMBERS}
    return InvocationResponse(
        scored_by=scored_by,
        model=model,
        customer_ids=request.customer_ids,
        customer_offsets=request.customer_offsets,
        product_id=request.product_id,
        **checked,
    )
