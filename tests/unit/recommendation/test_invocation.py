"""The /invocations schema: round trips, JSON = CSV = in-process, invoke = predict_analysis, and
every kind of bad request or response refused with the path of the bad field."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from pantree_common.errors import InvalidArgument
from services.recommendation import invocation
from services.recommendation.invocation import (
    CSV,
    JSON,
    InvocationRequest,
    UnsupportedMediaType,
    invoke,
    parse_request,
    parse_response,
    request_from_analyses,
)
from services.recommendation.scoring import score
from tests.unit.recommendation.fake_sagemaker import analyses, trained_model


def batch(count: int = 6) -> InvocationRequest:
    return request_from_analyses(*analyses(count))


def document(count: int = 2) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(batch(count).to_json())
    return parsed


def assert_same_request(left: InvocationRequest, right: InvocationRequest) -> None:
    assert left.customer_ids == right.customer_ids
    for name in (
        "as_of_epoch_day",
        "customer_offsets",
        "product_id",
        "category",
        "department",
        "intervals_days",
        "interval_offsets",
    ):
        np.testing.assert_array_equal(getattr(left, name), getattr(right, name), err_msg=name)
    assert set(left.numbers) == set(right.numbers)
    for name, values in left.numbers.items():
        np.testing.assert_array_equal(values, right.numbers[name], err_msg=name)


def to_csv(request: InvocationRequest) -> bytes:
    """One row per item, every column."""
    parsed = json.loads(request.to_json())
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=invocation.CSV_COLUMNS)
    writer.writeheader()
    for customer in parsed["customers"]:
        for item in customer["items"]:
            gaps = " ".join(f"{gap:g}" for gap in item["intervals_days"])
            writer.writerow(
                {
                    "customer_id": customer["customer_id"],
                    "as_of_epoch_day": customer["as_of_epoch_day"],
                    **item,
                    "intervals_days": gaps,
                }
            )
    return out.getvalue().encode()


def refused(body: bytes | dict[str, Any], content_type: str = JSON) -> tuple[str, str]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    with pytest.raises(InvalidArgument) as caught:
        parse_request(raw, content_type)
    [violation] = caught.value.violations
    return violation.field, violation.description


# --- round trips and equalities ---------------------------------------------------------------


def test_a_request_survives_json_and_csv() -> None:
    request = batch()
    assert_same_request(parse_request(request.to_json(), JSON), request)
    assert_same_request(
        parse_request(request.to_json(), "application/json; charset=utf-8"), request
    )
    assert_same_request(parse_request(to_csv(request), CSV), request)


def test_invoke_on_a_batch_equals_predict_analysis_per_customer() -> None:
    model = trained_model()
    found, products = analyses(6)
    request = request_from_analyses(found, products)
    response = invoke(model, request)
    assert response.scored_by == "model"
    assert response.model is not None and response.model["dataset"] == "synthetic"
    for analysis, predicted in zip(found, invocation.predictions(response, request), strict=True):
        expected = model.predict_analysis(analysis, products)
        for name in ("score", "confidence", "p_rebuy", "interval_days", "cold_start"):
            np.testing.assert_array_equal(getattr(predicted, name), getattr(expected, name))


def test_a_response_survives_json_exactly() -> None:
    request = batch()
    response = invoke(trained_model(), request)
    parsed = parse_response(response.to_json(), request)
    assert (parsed.scored_by, parsed.model) == (response.scored_by, response.model)
    for name in ("score", "confidence", "p_rebuy", "interval_days"):
        np.testing.assert_array_equal(getattr(parsed, name), getattr(response, name))


def test_without_a_model_the_heuristic_answers_with_the_statistics_own_figures() -> None:
    found, products = analyses(2)
    response = invoke(None, request_from_analyses(found, products))
    assert (response.scored_by, response.model) == ("heuristic", None)
    items = [item for analysis in found for item in analysis.items]
    assert response.score.tolist() == [score(item) for item in items]
    assert response.confidence.tolist() == [item.confidence for item in items]
    np.testing.assert_allclose(response.p_rebuy, response.confidence / 100)
    assert response.interval_days.tolist() == [
        item.next_purchase_epoch_day - item.last_purchase_epoch_day
        if item.next_purchase_epoch_day
        else 0
        for item in items
    ]


def test_empty_batches_and_customers_without_items_are_answered() -> None:
    request = parse_request(
        b'{"customers": [{"customer_id": "", "as_of_epoch_day": 0, "items": []}]}', JSON
    )
    response = parse_response(invoke(trained_model(), request).to_json(), request)
    assert json.loads(response.to_json())["customers"] == [{"customer_id": "", "items": []}]
    empty = parse_request(b'{"customers": []}', JSON)
    assert json.loads(invoke(None, empty).to_json())["customers"] == []


def test_optional_fields_take_their_defaults() -> None:
    parsed = document(1)
    item = parsed["customers"][0]["items"][0]
    for name in (
        "category",
        "department",
        "unit_price_usd",
        "confidence",
        "next_purchase_epoch_day",
    ):
        del item[name]
    request = parse_request(json.dumps(parsed).encode(), JSON)
    assert (request.category[0], request.department[0]) == ("", "")
    assert request.numbers["unit_price_usd"][0] == 0
    assert request.numbers["next_purchase_epoch_day"][0] == 0


# --- refused requests -------------------------------------------------------------------------


def edit(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """A valid two-customer document with one change."""
    parsed = document()
    change(parsed)
    return parsed


def item(parsed: dict[str, Any], customer: int = 0, index: int = 0) -> dict[str, Any]:
    found: dict[str, Any] = parsed["customers"][customer]["items"][index]
    return found


@pytest.mark.parametrize(
    ("change", "field", "why"),
    [
        (lambda d: d.update(extra=1), "extra", "is not a known field"),
        (lambda d: d.pop("customers"), "customers", "is required"),
        (lambda d: d.update(customers={}), "customers", "must be an array, got an object"),
        (
            lambda d: d["customers"][1].update(as_of_epoch_day=-1),
            "customers[1].as_of_epoch_day",
            "must be a finite whole number from 0",
        ),
        (
            lambda d: d["customers"][0].update(as_of_epoch_day=19_000.5),
            "customers[0].as_of_epoch_day",
            "whole number",
        ),
        (
            lambda d: d["customers"][0].update(customer_id=7),
            "customers[0].customer_id",
            "must be a string, got a number",
        ),
        (
            lambda d: item(d, 1, 2).update(recency_weight=1.5),
            "customers[1].items[2].recency_weight",
            "from 0 to 1, got 1.5",
        ),
        (
            lambda d: item(d).update(purchase_days="9"),
            "customers[0].items[0].purchase_days",
            "must be a number, got a string",
        ),
        (
            lambda d: item(d).update(quantity_per_day=True),
            "customers[0].items[0].quantity_per_day",
            "must be a number, got a boolean",
        ),
        (
            lambda d: item(d).update(confidence=None),
            "customers[0].items[0].confidence",
            "must be a number, got null",
        ),
        (
            lambda d: item(d).update(total_quantity=10**400),
            "customers[0].items[0].total_quantity",
            "must be a finite number >= 0",
        ),
        (
            lambda d: item(d).update(colour="red"),
            "customers[0].items[0].colour",
            "is not a known field",
        ),
        (
            lambda d: item(d).pop("median_interval_days"),
            "customers[0].items[0].median_interval_days",
            "is required",
        ),
        (
            lambda d: item(d).update(intervals_days=[7]),
            "customers[0].items[0].intervals_days",
            "must hold purchase_days - 1",
        ),
        (
            lambda d: item(d)["intervals_days"].__setitem__(2, 0),
            "customers[0].items[0].intervals_days[2]",
            "from 1 to",
        ),
        (
            lambda d: item(d).update(intervals_days="7 7"),
            "customers[0].items[0].intervals_days",
            "must be an array, got a string",
        ),
        (
            lambda d: item(d).update(last_purchase_epoch_day=10),
            "customers[0].items[0].intervals_days",
            "before 1970-01-01",
        ),
        (
            lambda d: item(d, 0, 1).update(product_id=item(d)["product_id"]),
            "customers[0].items[1].product_id",
            "repeats",
        ),
        (
            lambda d: item(d).update(product_id="  "),
            "customers[0].items[0].product_id",
            "must not be blank",
        ),
        (
            lambda d: item(d).update(category="x" * 101),
            "customers[0].items[0].category",
            "at most 100 characters",
        ),
        (
            lambda d: d.update(customers=[d["customers"][0]] * 1001),
            "customers",
            "at most 1,000 customers",
        ),
    ],
)
def test_a_bad_field_is_named_by_its_json_path(
    change: Callable[[dict[str, Any]], None], field: str, why: str
) -> None:
    found_field, found_why = refused(edit(change))
    assert found_field == field
    assert why in found_why


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"{", "is not JSON"),
        (b"[]", "must be an object, got an array"),
        (b"\xff\xfe", "is not UTF-8"),
        (b'{"customers": [' * 100_000, "nested too deeply"),
    ],
)
def test_an_unreadable_body_is_refused(body: bytes, why: str) -> None:
    field, found = refused(body)
    assert field == "body"
    assert why in found


def test_non_finite_numbers_are_refused_with_their_path() -> None:
    parsed = document()
    item(parsed)["recency_weight"] = float("nan")  # json.dumps writes NaN, as some clients do
    assert refused(json.dumps(parsed).encode()) == (
        "customers[0].items[0].recency_weight",
        "must be a finite number from 0 to 1, got nan",
    )


def test_a_batch_over_the_item_limit_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(invocation, "MAX_ITEMS", 30)
    field, why = refused(document(2))
    assert field == "customers[1].items"
    assert "more than 30 items" in why


@pytest.mark.parametrize(
    "content_type", ["text/plain", None, "application/x-npy", "application/json; charset=latin-1"]
)
def test_other_content_types_are_unsupported(content_type: str | None) -> None:
    with pytest.raises(UnsupportedMediaType):
        parse_request(b"{}", content_type)


def test_csv_errors_name_the_line_and_column() -> None:
    text = to_csv(batch(2)).decode()
    lines = text.splitlines()
    header = lines[0].split(",")
    column = header.index("recency_weight")

    def with_cell(line: int, value: str) -> bytes:
        rows = list(csv.reader(io.StringIO(text)))
        rows[line - 1][column] = value
        out = io.StringIO()
        csv.writer(out).writerows(rows)
        return out.getvalue().encode()

    assert refused(with_cell(3, "high"), CSV) == (
        "line 3: recency_weight",
        "must be a number, got 'high'",
    )
    assert refused(with_cell(4, "2"), CSV)[0] == "line 4: recency_weight"
    assert refused(text.replace("recency_weight", "recency", 1).encode(), CSV) == (
        "line 1: recency",
        "is not a known column",
    )
    without = "\n".join(
        ",".join(cells[:column] + cells[column + 1 :]) for cells in csv.reader(io.StringIO(text))
    )
    assert refused(without.encode(), CSV) == ("line 1: recency_weight", "is a required column")
    assert refused(b"", CSV) == ("line 1", "must name the columns")


def test_csv_rows_of_one_customer_share_the_analysis_day() -> None:
    rows = list(csv.reader(io.StringIO(to_csv(batch(1)).decode())))
    rows[2][1] = str(int(rows[2][1]) + 1)
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    assert refused(out.getvalue().encode(), CSV) == (
        "line 3: as_of_epoch_day",
        "differs from the customer's earlier rows",
    )


# --- refused responses ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda d: d.update(scored_by="magic"), "scored_by"),
        (lambda d: d.update(model=[]), "model"),
        (lambda d: d["customers"].pop(), "customers"),
        (
            lambda d: d["customers"][1].update(customer_id="someone else"),
            "customers[1].customer_id",
        ),
        (lambda d: d["customers"][0]["items"].pop(), "customers[0].items"),
        (
            lambda d: d["customers"][0]["items"].reverse(),
            "customers[0].items[0].product_id",
        ),
        (
            lambda d: d["customers"][0]["items"][1].update(p_rebuy=1.2),
            "customers[0].items[1].p_rebuy",
        ),
        (lambda d: d["customers"][1]["items"][0].pop("score"), "customers[1].items[0].score"),
        (
            lambda d: d["customers"][1]["items"][0].update(interval_days="soon"),
            "customers[1].items[0].interval_days",
        ),
    ],
)
def test_a_malformed_response_is_refused(
    change: Callable[[dict[str, Any]], None], field: str
) -> None:
    request = batch(2)
    answer = json.loads(invoke(trained_model(), request).to_json())
    change(answer)
    with pytest.raises(InvalidArgument) as caught:
        parse_response(json.dumps(answer).encode(), request)
    assert caught.value.violations[0].field == field
