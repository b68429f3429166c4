import math

import pytest
from pantree.domain.v1 import product_pb2

from pantree_common.domain.history import Product
from pantree_common.errors import InvalidArgument
from services.vectors.index import validate_products, validate_search


def _fields(error: pytest.ExceptionInfo[InvalidArgument]) -> list[str]:
    return [v.field for v in error.value.violations]


def test_search_defaults_top_k() -> None:
    assert validate_search(["milk"], 0, []) == 5
    assert validate_search(["milk"] * 200, 50, ["p-1"] * 10_000) == 50


@pytest.mark.parametrize("top_k", [-1, 51])
def test_search_rejects_top_k(top_k: int) -> None:
    with pytest.raises(InvalidArgument) as error:
        validate_search(["milk"], top_k, [])
    assert _fields(error) == ["top_k"]


@pytest.mark.parametrize("count", [0, 201])
def test_search_rejects_query_count(count: int) -> None:
    with pytest.raises(InvalidArgument) as error:
        validate_search(["milk"] * count, 5, [])
    assert _fields(error) == ["query_texts"]


def test_search_reports_each_bad_query_and_every_field() -> None:
    with pytest.raises(InvalidArgument) as error:
        validate_search(["milk", "", "eggs", " \t", "x" * 201], 99, ["p"] * 10_001, 1.5)
    assert _fields(error) == [
        "query_texts[1]",
        "query_texts[3]",
        "query_texts[4]",
        "top_k",
        "exclude_product_ids",
        "popularity_weight",
    ]


@pytest.mark.parametrize("weight", [-0.01, 1.01, math.nan, math.inf])
def test_search_rejects_popularity_weight(weight: float) -> None:
    with pytest.raises(InvalidArgument) as error:
        validate_search(["milk"], 1, [], weight)
    assert _fields(error) == ["popularity_weight"]
    assert validate_search(["milk"], 1, [], 0.05) == 1


def test_products_become_domain_products() -> None:
    message = product_pb2.Product(
        product_id="p-1",
        name="Whole Milk",
        category="dairy",
        department="grocery",
        unit_price_usd=3.5,
    )
    assert validate_products([message]) == [Product("p-1", "Whole Milk", "dairy", "grocery", 3.5)]


@pytest.mark.parametrize("count", [0, 5_001])
def test_products_rejects_count(count: int) -> None:
    with pytest.raises(InvalidArgument) as error:
        validate_products([product_pb2.Product(product_id="p", name="n")] * count)
    assert _fields(error) == ["products"]


def test_products_reports_every_bad_field_with_its_path() -> None:
    products = [
        product_pb2.Product(product_id="p-1", name="Milk"),
        product_pb2.Product(product_id="", name=" ", unit_price_usd=-1),
        product_pb2.Product(
            product_id="p-1",
            name="Milk again",
            category="c" * 101,
            department="d" * 101,
            unit_price_usd=math.nan,
        ),
        product_pb2.Product(product_id="i" * 129, name="n" * 201),
    ]
    with pytest.raises(InvalidArgument) as error:
        validate_products(products)
    assert _fields(error) == [
        "products[1].product_id",
        "products[1].name",
        "products[1].unit_price_usd",
        "products[2].category",
        "products[2].department",
        "products[2].unit_price_usd",
        "products[2].product_id",
        "products[3].product_id",
        "products[3].name",
    ]
