"""Model features: the batch and the serving adapters agree, hand-computed values, priors."""

from __future__ import annotations

import math

import numpy as np
from pantree.domain.v1 import product_pb2

from pantree_common.datasets.transactions import Items, Transactions
from pantree_common.domain.history import History
from services.frequency.statistics import analyze, to_protos
from services.recommendation import training
from services.recommendation.features import (
    FEATURE_NAMES,
    Priors,
    columns_from_analysis,
    feature_matrix,
)

DAY0 = 19_000


def _items() -> Items:
    count = 8
    return Items(
        tuple(f"p{i}" for i in range(count)),
        tuple(f"Product {i}" for i in range(count)),
        ("Milk", "Milk", "Bread", "Bread", "Coffee", "", "Milk", "Eggs"),
        ("Grocery", "Grocery", "Bakery", "Bakery", "Grocery", "", "Grocery", "Grocery"),
        np.array([2.5, 3.0, 0.0, 4.0, 9.0, 1.0, 2.0, 3.5]),
    )


def _transactions() -> Transactions:
    """Three shoppers with rhythms, one-offs, same-day repeats and an unknown category."""
    rng = np.random.default_rng(3)
    events: list[tuple[int, int, int, float, float]] = []
    for customer in range(3):
        for item, period in ((0, 7), (2, 10), (4, 21)):
            day = int(rng.integers(0, period))
            while day < 120:
                events.append((customer, item, day, 1.0 + customer, 2.0 + item))
                day += period + int(rng.integers(-2, 3))
        for item in (1, 3, 5, 6, 7):
            for day in rng.choice(120, size=int(rng.integers(1, 4)), replace=False).tolist():
                events.append((customer, item, day, 1.0, 1.5))
        events.append((customer, 0, 50, 2.0, 2.5))  # a second event on a purchase day
    array = np.array(events)
    return Transactions.build(
        "tiny",
        ["a", "b", "c"],
        _items(),
        array[:, 0].astype(np.int64),
        array[:, 1].astype(np.int64),
        array[:, 2].astype(np.int64) + DAY0,
        array[:, 3],
        array[:, 4],
    )


def _priors(transactions: Transactions) -> Priors:
    catalog = training.Catalog(transactions)
    rows = np.arange(len(transactions.items)).repeat(12)
    labels = np.arange(rows.size) % 3 == 0
    return Priors.fit(
        catalog.ids,
        catalog.categories,
        catalog.departments,
        rows,
        labels,
        rows,
        (np.arange(rows.size) % 9 + 3).astype(np.float64),
        min_product_pairs=10,
    )


def _by_product(matrix: np.ndarray, product_ids: list[str]) -> dict[str, np.ndarray]:
    return {pid: matrix[row] for row, pid in enumerate(product_ids)}


def test_batch_and_serving_features_agree() -> None:
    transactions = _transactions()
    priors = _priors(transactions)
    catalog = training.Catalog(transactions)
    as_of = DAY0 + 130
    pairs = training.pair_table(transactions, as_of, 3, catalog)
    batch = feature_matrix(pairs.columns(catalog, catalog.codes(priors)), priors)
    assert batch.shape == (pairs.item.size, len(FEATURE_NAMES))
    products = {
        p.product_id: product_pb2.Product(
            product_id=p.product_id,
            name=p.name,
            category=p.category.upper(),  # names match whatever their case
            department=p.department,
            unit_price_usd=p.unit_price_usd,
        )
        for p in (transactions.items.product(i) for i in range(len(transactions.items)))
    }
    for customer, history in enumerate(transactions.histories()):
        analysis = to_protos([history], analyze([history], [as_of], 3), [as_of], 3)[0]
        serving = feature_matrix(columns_from_analysis(analysis, products, priors), priors)
        rows = np.flatnonzero(pairs.customer == customer)
        batch_rows = _by_product(batch[rows], [catalog.ids[i] for i in pairs.item[rows]])
        serving_rows = _by_product(serving, [item.product_id for item in analysis.items])
        assert batch_rows.keys() == serving_rows.keys()
        for product_id, values in batch_rows.items():
            np.testing.assert_allclose(
                serving_rows[product_id], values, rtol=1e-12, equal_nan=True, err_msg=product_id
            )


def _single(days: list[int], as_of: int, others: list[list[int]] | None = None) -> dict[str, float]:
    """Features of product 0 in a history buying product i on the days others[i - 1]."""
    all_days = [days, *(others or [])]
    products = [_items().product(i) for i in range(len(all_days))]
    index = [i for i, ds in enumerate(all_days) for _ in ds]
    history = History.build("x", products, index, [DAY0 + d for ds in all_days for d in ds])
    analysis = to_protos([history], analyze([history], [DAY0 + as_of], 2), [DAY0 + as_of], 2)[0]
    priors = _priors(_transactions())
    lookup = {p.product_id: p.to_proto() for p in products}
    matrix = feature_matrix(columns_from_analysis(analysis, lookup, priors), priors)
    row = [item.product_id for item in analysis.items].index("p0")
    return dict(zip(FEATURE_NAMES, matrix[row].tolist(), strict=True))


def test_hand_computed_rhythm() -> None:
    f = _single([0, 7, 14, 21], as_of=28, others=[[3, 10, 21]])
    assert f["purchase_days"] == 4
    assert f["cold_start"] == 0
    assert f["median_interval_days"] == 7
    assert f["coefficient_of_variation"] == 0
    assert f["last_interval_days"] == 7
    assert f["days_since_last_purchase"] == 7
    assert f["overdue_ratio"] == 1
    assert f["due_in_days"] == 0
    assert f["tenure_days"] == 28
    assert f["purchases_28d"] == 4  # days 0..27
    assert f["short_gap_share"] == 1
    assert f["longest_interval_days"] == 7
    # Trips: 0, 3, 7, 10, 14, 21 -> 6 shopping days; none after day 21.
    assert f["customer_trips"] == 6
    assert f["trip_share"] == 4 / 6
    assert f["trips_since_last_purchase"] == 0
    assert f["share_last_5_trips"] == 3 / 5  # trips 3, 7, 10, 14, 21
    assert f["customer_days_since_trip"] == 7
    assert f["customer_history_days"] == 28
    assert f["customer_products"] == 2
    assert f["customer_gap_days"] == 21 / 5


def test_single_purchase_is_cold_start_without_rhythm() -> None:
    f = _single([5], as_of=40, others=[[1, 30]])
    assert f["purchase_days"] == 1
    assert f["cold_start"] == 1
    for name in ("median_interval_days", "std_interval_days", "last_interval_days"):
        assert math.isnan(f[name]), name
    assert f["trips_since_last_purchase"] == 1  # day 30
    assert f["days_since_last_purchase"] == 35


def test_priors_fall_back_from_product_to_category_to_department_to_global() -> None:
    priors = _priors(_transactions())
    product, category, department = priors.encode(
        np.array(["p0", "zz", "zz", "zz", "zz"]),
        np.array(["Milk", " milk ", "Unknown", "Unknown", ""]),
        np.array(["Grocery", "grocery", "GROCERY", "Nowhere", ""]),
    )
    assert product.tolist() == [0, -1, -1, -1, -1]
    assert (category[:2] >= 0).all() and (category[2:] == -1).all()
    assert (department[:3] >= 0).all() and (department[3:] == -1).all()
    values = priors.features(product, category, department)
    milk = priors.category_rate[category[1]]
    grocery = priors.department_rate[department[2]]
    assert values["category_rate"][1] == milk
    assert values["product_rate"][1] == milk
    assert values["category_rate"][2] == grocery
    assert values["product_rate"][3] == priors.global_rate
    assert values["category_interval_days"][4] == priors.global_interval_days
    assert values["product_rate"][0] != milk or priors.product_rate[0] == milk


def test_empty_analysis_has_no_rows() -> None:
    from pantree.domain.v1 import analysis_pb2

    priors = _priors(_transactions())
    analysis = analysis_pb2.HistoryAnalysis(customer_id="x", as_of_epoch_day=DAY0)
    matrix = feature_matrix(columns_from_analysis(analysis, {}, priors), priors)
    assert matrix.shape == (0, len(FEATURE_NAMES))
