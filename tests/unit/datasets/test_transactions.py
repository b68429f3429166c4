"""The columnar Transactions type: sorting, windows and per-customer histories."""

from __future__ import annotations

import numpy as np
import pytest

from pantree_common.datasets.transactions import Items, Transactions


def _items() -> Items:
    return Items(
        ("i-0", "i-1", "i-2"),
        ("Milk 1 GAL", "Coffee 12 OZ", "Paper Towels 6 CT"),
        ("milk", "coffee", "paper"),
        ("grocery", "grocery", "household"),
        np.array([3.5, 8.0, 9.0]),
    )


def _transactions() -> Transactions:
    # Deliberately unsorted rows: (customer, item, day, quantity, price).
    rows = [
        (1, 2, 12, 1.0, 9.5),
        (0, 1, 10, 2.0, 7.5),
        (0, 0, 10, 1.0, 3.5),
        (1, 0, 3, 1.0, 3.0),
        (0, 0, 5, 3.0, 3.25),
        (1, 2, 4, 2.0, 8.5),
    ]
    c, i, d, q, p = (np.array(column) for column in zip(*rows, strict=True))
    return Transactions.build("toy", ["alice", "bob", "carol"], _items(), c, i, d, q, p)


def test_build_sorts_by_customer_day_item_and_keeps_rows_together() -> None:
    tx = _transactions()
    assert tx.customer.tolist() == [0, 0, 0, 1, 1, 1]
    assert tx.day.tolist() == [5, 10, 10, 3, 4, 12]
    assert tx.item.tolist() == [0, 0, 1, 0, 2, 2]
    assert tx.quantity.tolist() == [3.0, 1.0, 2.0, 1.0, 2.0, 1.0]
    assert tx.price.tolist() == [3.25, 3.5, 7.5, 3.0, 8.5, 9.5]
    assert [str(a.dtype) for a in (tx.customer, tx.item, tx.day)] == ["int32"] * 3
    assert [str(a.dtype) for a in (tx.quantity, tx.price)] == ["float64"] * 2
    assert tx.event_count == 6


def test_build_rejects_columns_of_different_lengths() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        Transactions.build(
            "bad",
            ["a"],
            _items(),
            np.array([0, 0]),
            np.array([0]),
            np.array([1, 2]),
            np.array([1.0, 1.0]),
            np.array([1.0, 1.0]),
        )


def test_window_keeps_start_inclusive_end_exclusive_and_the_indexes() -> None:
    tx = _transactions()
    window = tx.window(4, 12)
    assert window.day.tolist() == [5, 10, 10, 4]
    assert window.customer.tolist() == [0, 0, 0, 1]
    assert window.item.tolist() == [0, 0, 1, 2]
    assert window.customer_ids is tx.customer_ids and window.items is tx.items
    assert tx.window(100, 200).event_count == 0


def test_customer_offsets_cover_customers_without_events() -> None:
    assert _transactions().customer_offsets().tolist() == [0, 3, 6, 6]


def test_histories_list_each_customers_own_products_and_events() -> None:
    tx = _transactions()
    alice, bob = tx.histories()  # carol has no events and is skipped
    assert alice.customer_id == "alice"
    assert [p.product_id for p in alice.products] == ["i-0", "i-1"]
    assert alice.products[0].name == "Milk 1 GAL"
    assert alice.products[1].unit_price_usd == 8.0
    assert alice.epoch_day.tolist() == [5, 10, 10]
    assert [alice.products[k].product_id for k in alice.product_index.tolist()] == [
        "i-0",
        "i-0",
        "i-1",
    ]
    assert alice.unit_price_usd.tolist() == [3.25, 3.5, 7.5]
    assert bob.customer_id == "bob"
    assert [p.product_id for p in bob.products] == ["i-0", "i-2"]
    assert bob.products[1].department == "household"
    assert bob.epoch_day.tolist() == [3, 4, 12]
    assert bob.quantity.tolist() == [1.0, 2.0, 1.0]
    (only_bob,) = tx.histories([1])
    assert only_bob.customer_id == "bob"
