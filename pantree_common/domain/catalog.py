"""The built-in product catalog and shopper archetypes.

A small, hand-curated grocery catalog: categories carry a department, a typical rebuy interval
and basket quantity; products carry a shelf price. It is the embedded default so everything runs
offline; a catalog built from real data can replace it behind the same types.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

from pantree_common.domain.history import Product
from pantree_common.errors import Collector


@dataclass(frozen=True)
class Category:
    """A product category and how households typically rebuy it."""

    name: str
    department: str
    typical_interval_days: float
    typical_quantity: float
    subscribable: bool = True


@dataclass(frozen=True)
class Archetype:
    """A household type: which categories it adds and how fast it shops."""

    archetype_id: str
    display_name: str
    description: str
    typical_categories: tuple[str, ...]
    interval_factor: float
    quantity_factor: float
    price_factor: float
    regularity: float
    """Shape of the interval distribution: higher means more regular rebuys."""


CATEGORIES: dict[str, Category] = {
    c.name: c
    for c in (
        Category("dairy", "grocery", 7, 1),
        Category("eggs", "grocery", 9, 1),
        Category("bakery", "grocery", 6, 1, subscribable=False),
        Category("produce", "produce", 6, 2, subscribable=False),
        Category("meat", "meat", 10, 1),
        Category("seafood", "meat", 18, 1),
        Category("pantry", "grocery", 28, 1),
        Category("breakfast", "grocery", 16, 1),
        Category("snacks", "grocery", 12, 2),
        Category("beverages", "grocery", 10, 2),
        Category("coffee & tea", "grocery", 21, 1),
        Category("frozen", "grocery", 14, 2),
        Category("baby", "drug gm", 12, 1),
        Category("household", "drug gm", 35, 1),
        Category("personal care", "drug gm", 40, 1),
        Category("pet", "drug gm", 25, 1),
        Category("health & wellness", "drug gm", 30, 1),
    )
}

_PRODUCTS: tuple[tuple[str, str, str, float], ...] = (
    ("p-1001", "Whole Milk 1 Gallon", "dairy", 3.89),
    ("p-1002", "2% Reduced Fat Milk 1 Gallon", "dairy", 3.79),
    ("p-1003", "Oat Milk Original 64 oz", "dairy", 4.49),
    ("p-1004", "Almond Milk Unsweetened 64 oz", "dairy", 3.99),
    ("p-1005", "Greek Yogurt Plain 32 oz", "dairy", 5.99),
    ("p-1006", "Strawberry Yogurt Cups 4 pk", "dairy", 3.49),
    ("p-1007", "Cheddar Cheese Block 8 oz", "dairy", 3.29),
    ("p-1008", "Salted Butter 1 lb", "dairy", 4.79),
    ("p-1009", "Cream Cheese 8 oz", "dairy", 2.49),
    ("p-1010", "Shredded Mozzarella 16 oz", "dairy", 4.99),
    ("p-1101", "Large Eggs Dozen", "eggs", 3.49),
    ("p-1102", "Organic Free Range Eggs Dozen", "eggs", 5.99),
    ("p-1201", "Whole Wheat Bread Loaf", "bakery", 3.29),
    ("p-1202", "White Sandwich Bread", "bakery", 2.49),
    ("p-1203", "Bagels 6 pk", "bakery", 3.99),
    ("p-1204", "Flour Tortillas 10 ct", "bakery", 2.99),
    ("p-1301", "Bananas per lb", "produce", 0.65),
    ("p-1302", "Gala Apples 3 lb Bag", "produce", 4.99),
    ("p-1303", "Baby Spinach 5 oz", "produce", 3.49),
    ("p-1304", "Avocados Hass", "produce", 1.25),
    ("p-1305", "Strawberries 1 lb", "produce", 3.99),
    ("p-1306", "Organic Carrots 2 lb", "produce", 2.49),
    ("p-1307", "Blueberries 1 pint", "produce", 4.29),
    ("p-1308", "Romaine Hearts 3 ct", "produce", 3.79),
    ("p-1401", "Boneless Chicken Breast per lb", "meat", 4.99),
    ("p-1402", "Lean Ground Beef 1 lb", "meat", 5.99),
    ("p-1403", "Thick Cut Bacon 12 oz", "meat", 6.49),
    ("p-1404", "Turkey Deli Slices 9 oz", "meat", 4.99),
    ("p-1501", "Atlantic Salmon Fillet per lb", "seafood", 10.99),
    ("p-1502", "Frozen Shrimp 1 lb", "seafood", 8.99),
    ("p-1601", "Spaghetti Pasta 16 oz", "pantry", 1.49),
    ("p-1602", "Long Grain White Rice 5 lb", "pantry", 4.99),
    ("p-1603", "Extra Virgin Olive Oil 500 ml", "pantry", 8.99),
    ("p-1604", "Marinara Sauce 24 oz", "pantry", 3.49),
    ("p-1605", "Black Beans Canned 15 oz", "pantry", 1.09),
    ("p-1606", "Creamy Peanut Butter 16 oz", "pantry", 2.99),
    ("p-1607", "Chicken Broth 32 oz", "pantry", 2.79),
    ("p-1608", "All Purpose Flour 5 lb", "pantry", 3.29),
    ("p-1609", "Granulated Sugar 4 lb", "pantry", 3.49),
    ("p-1701", "Old Fashioned Oats 42 oz", "breakfast", 5.49),
    ("p-1702", "Honey Nut Cereal 15 oz", "breakfast", 4.29),
    ("p-1703", "Granola Honey Almond 12 oz", "breakfast", 4.99),
    ("p-1704", "Maple Syrup 12 oz", "breakfast", 7.99),
    ("p-1801", "Tortilla Chips 13 oz", "snacks", 3.99),
    ("p-1802", "Kettle Potato Chips 8 oz", "snacks", 3.49),
    ("p-1803", "Mixed Nuts 16 oz", "snacks", 8.99),
    ("p-1804", "Granola Bars 12 ct", "snacks", 4.49),
    ("p-1805", "Dark Chocolate Bar 3.5 oz", "snacks", 2.99),
    ("p-1806", "Organic Fruit Snacks 10 ct", "snacks", 4.79),
    ("p-1901", "Sparkling Water 12 pk", "beverages", 5.49),
    ("p-1902", "Orange Juice 52 oz", "beverages", 3.99),
    ("p-1903", "Cola 12 pk Cans", "beverages", 6.99),
    ("p-1904", "Bottled Spring Water 24 pk", "beverages", 4.99),
    ("p-1905", "Kombucha Ginger 16 oz", "beverages", 3.49),
    ("p-2001", "Ground Coffee Medium Roast 12 oz", "coffee & tea", 8.99),
    ("p-2002", "Coffee Pods 24 ct", "coffee & tea", 14.99),
    ("p-2003", "Green Tea Bags 40 ct", "coffee & tea", 4.49),
    ("p-2101", "Frozen Pizza Pepperoni", "frozen", 5.99),
    ("p-2102", "Frozen Mixed Vegetables 16 oz", "frozen", 1.99),
    ("p-2103", "Vanilla Ice Cream 48 oz", "frozen", 4.99),
    ("p-2104", "Frozen Berry Blend 32 oz", "frozen", 8.49),
    ("p-2201", "Baby Diapers Size 3 84 ct", "baby", 27.99),
    ("p-2202", "Baby Wipes Unscented 3 pk", "baby", 8.99),
    ("p-2203", "Infant Formula Powder 30 oz", "baby", 32.99),
    ("p-2204", "Baby Food Pouches 4 pk", "baby", 5.49),
    ("p-2301", "Paper Towels 6 Rolls", "household", 11.99),
    ("p-2302", "Toilet Paper 12 Rolls", "household", 13.99),
    ("p-2303", "Laundry Detergent 92 oz", "household", 12.99),
    ("p-2304", "Dish Soap 24 oz", "household", 3.49),
    ("p-2305", "Trash Bags 13 gal 40 ct", "household", 8.49),
    ("p-2306", "Dishwasher Pods 42 ct", "household", 11.49),
    ("p-2401", "Toothpaste Whitening 4 oz", "personal care", 3.99),
    ("p-2402", "Shampoo 12 oz", "personal care", 6.49),
    ("p-2403", "Body Wash 18 oz", "personal care", 5.99),
    ("p-2404", "Deodorant Stick", "personal care", 4.99),
    ("p-2501", "Dry Dog Food 15 lb", "pet", 24.99),
    ("p-2502", "Cat Litter 20 lb", "pet", 12.99),
    ("p-2503", "Wet Cat Food 12 pk", "pet", 9.99),
    ("p-2601", "Daily Multivitamin 100 ct", "health & wellness", 10.99),
    ("p-2602", "Whey Protein Powder 2 lb", "health & wellness", 29.99),
    ("p-2603", "Fish Oil Omega-3 120 ct", "health & wellness", 14.99),
)

ARCHETYPES: dict[str, Archetype] = {
    a.archetype_id: a
    for a in (
        Archetype(
            "health_conscious",
            "Health conscious",
            "Buys fresh produce, plant milks and supplements on a steady weekly rhythm.",
            ("produce", "dairy", "health & wellness", "coffee & tea", "seafood", "breakfast"),
            interval_factor=0.9,
            quantity_factor=1.0,
            price_factor=1.15,
            regularity=9.0,
        ),
        Archetype(
            "busy_family",
            "Busy family",
            "A household with kids: large baskets, baby and household staples, frequent trips.",
            ("baby", "dairy", "snacks", "household", "breakfast", "frozen", "bakery"),
            interval_factor=0.7,
            quantity_factor=2.0,
            price_factor=1.0,
            regularity=6.0,
        ),
        Archetype(
            "budget_conscious",
            "Budget conscious",
            "Buys store staples in bulk, stretches intervals and watches prices.",
            ("pantry", "frozen", "household", "eggs", "bakery"),
            interval_factor=1.25,
            quantity_factor=1.5,
            price_factor=0.85,
            regularity=5.0,
        ),
        Archetype(
            "single_professional",
            "Single professional",
            "One adult with little time: coffee, ready-to-eat food and small baskets.",
            ("coffee & tea", "beverages", "frozen", "snacks", "personal care"),
            interval_factor=1.1,
            quantity_factor=0.8,
            price_factor=1.1,
            regularity=4.0,
        ),
    )
}


@cache
def products() -> tuple[Product, ...]:
    """Every catalog product, in id order."""
    return tuple(
        Product(pid, name, category, CATEGORIES[category].department, price)
        for pid, name, category, price in _PRODUCTS
    )


@cache
def products_by_id() -> dict[str, Product]:
    return {p.product_id: p for p in products()}


_WORD = re.compile(r"[a-z0-9]+")


def _words(text: str) -> set[str]:
    return {w.removesuffix("s") for w in _WORD.findall(text.lower()) if len(w) > 1}


@cache
def _product_words() -> tuple[tuple[Product, frozenset[str]], ...]:
    return tuple((p, frozenset(_words(f"{p.name} {p.category}"))) for p in products())


def resolve(name: str) -> Product | None:
    """The catalog product whose name best matches `name` by shared words, or None."""
    wanted = _words(name)
    if not wanted:
        return None
    best: tuple[float, str] | None = None
    match: Product | None = None
    for product, have in _product_words():
        shared = len(wanted & have)
        if not shared:
            continue
        score = (shared / len(wanted) + shared / len(have) / 4, product.product_id)
        if best is None or score[0] > best[0]:
            best, match = score, product
    return match


def check_archetype(errors: Collector, value: str, *, required: bool) -> Archetype | None:
    """The archetype named `value`, recording a violation on "archetype" if it is unknown (or
    empty while required)."""
    if not value and not required:
        return None
    known = ARCHETYPES.get(value)
    if known is None:
        errors.add(
            "archetype",
            f"unknown archetype {value[:64]!r}; expected one of " + ", ".join(sorted(ARCHETYPES)),
        )
    return known
