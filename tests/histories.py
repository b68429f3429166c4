"""Purchase histories for tests, built as a caller would send them."""

from __future__ import annotations

from pantree.domain.v1 import history_pb2

from pantree_common.domain import catalog
from pantree_common.domain.dates import today_epoch_day

# Whole milk, ground coffee, toilet paper, dark chocolate: the catalog's own entries.
PRODUCTS = [
    catalog.products_by_id()[product_id].to_proto()
    for product_id in ("p-1001", "p-2001", "p-2302", "p-1805")
]


def rhythmic_history(
    customer_id: str = "shopper-1", weeks: int = 20
) -> history_pb2.PurchaseHistory:
    """Milk weekly, coffee every 3 weeks, toilet paper monthly, chocolate twice, up to today
    (the real date: Recommend analyses as of today unless told otherwise)."""
    end = today_epoch_day()
    start = end - weeks * 7
    events: list[tuple[int, int, float]] = []
    events += [(day, 0, 2.0) for day in range(start, end, 7)]
    events += [(day, 1, 1.0) for day in range(start + 2, end, 21)]
    events += [(day, 2, 1.0) for day in range(start + 5, end, 30)]
    events += [(start + 10, 3, 1.0), (start + 60, 3, 1.0)]
    events.sort()
    return history_pb2.PurchaseHistory(
        customer_id=customer_id,
        products=PRODUCTS,
        product_indexes=[e[1] for e in events],
        purchase_epoch_days=[e[0] for e in events],
        quantities=[e[2] for e in events],
    )
