"""Product catalogs and shopper archetypes.

Two catalogs share one type: the Complete Journey catalog (92k real products with fitted
rebuy rhythms, built by pantree_common.datasets.catalog_build into the data directory) and a
small hand-written one that needs nothing and that unit tests use. Each process picks one at
start-up (PANTREE_CATALOG) and every core reads it through active_catalog().
"""

from __future__ import annotations

import gzip
import json
import logging
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache, cached_property
from pathlib import Path
from typing import Any

import numpy as np

from pantree_common.config import setting
from pantree_common.domain.calibration import ALL_ARCHETYPES, Calibration, Quantiles, Rhythm
from pantree_common.domain.history import Product
from pantree_common.errors import Collector, ConfigError

log = logging.getLogger(__name__)

CATALOG_FORMAT = "pantree-catalog/2"
_BUILTIN_RHYTHM_SEED = 20_240_101
_BUILTIN_DRAWS = 4000
_DEFAULT_REGULARITY = 5.0


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


@dataclass(frozen=True, eq=False)
class Catalog:
    """The products a deployment knows, how each category is rebought, and the simulator's
    fitted rhythms. Built in (82 products) or built from Complete Journey (catalog_build)."""

    source: str
    products: tuple[Product, ...]
    categories: Mapping[str, Category]
    calibration: Calibration

    @cached_property
    def by_id(self) -> dict[str, Product]:
        return {p.product_id: p for p in self.products}

    @cached_property
    def rank(self) -> dict[str, int]:
        """Each product's position: 0 is the most rebought in a catalog built from data."""
        return {p.product_id: position for position, p in enumerate(self.products)}

    @cached_property
    def _word_index(self) -> dict[str, list[int]]:
        index: dict[str, list[int]] = {}
        for position, product in enumerate(self.products):
            for word in _words(f"{product.name} {product.category}"):
                index.setdefault(word, []).append(position)
        return index

    def resolve(self, name: str) -> Product | None:
        """The product sharing the most of `name`'s words, or None; among equals the earlier
        one (catalog files list the most rebought products first, so "milk" finds the milk
        people buy rather than the rarest product with "milk" in its name)."""
        shared: dict[int, int] = {}
        for word in _words(name):
            for position in self._word_index.get(word, ()):
                shared[position] = shared.get(position, 0) + 1
        if not shared:
            return None
        return self.products[min(shared, key=lambda position: (-shared[position], position))]

    def lookup(self, errors: Collector, product_id: str, field: str) -> Product | None:
        """The product with `product_id`, or None after recording a violation on `field`."""
        product = self.by_id.get(product_id)
        if product is None:
            errors.add(field, f"{product_id[:64]!r} is not in the {self.source} catalog")
        return product

    def subscribable(self, category: str) -> bool:
        """Whether a store would deliver this category on a schedule (unknown ones may be)."""
        known = self.categories.get(category)
        return known is None or known.subscribable

    def to_json(self) -> dict[str, Any]:
        """Columnar JSON: category and department names are stored once each."""
        categories = sorted(self.categories)
        departments = sorted({p.department for p in self.products})
        category_index = {name: i for i, name in enumerate(categories)}
        department_index = {name: i for i, name in enumerate(departments)}
        return {
            "format": CATALOG_FORMAT,
            "source": self.source,
            "categories": [
                {
                    "name": name,
                    "department": self.categories[name].department,
                    "typical_interval_days": self.categories[name].typical_interval_days,
                    "typical_quantity": self.categories[name].typical_quantity,
                    "subscribable": self.categories[name].subscribable,
                }
                for name in categories
            ],
            "departments": departments,
            "products": {
                "product_id": [p.product_id for p in self.products],
                "name": [p.name for p in self.products],
                "category": [category_index[p.category] for p in self.products],
                "department": [department_index[p.department] for p in self.products],
                "unit_price_usd": [p.unit_price_usd for p in self.products],
            },
            "calibration": self.calibration.to_json(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Catalog:
        if data.get("format") != CATALOG_FORMAT:
            raise ValueError(
                f"catalog format {data.get('format')!r} is not {CATALOG_FORMAT!r}; rebuild it "
                "with `pantree catalog build`"
            )
        categories = [
            Category(
                str(c["name"]),
                str(c["department"]),
                float(c["typical_interval_days"]),
                float(c["typical_quantity"]),
                bool(c["subscribable"]),
            )
            for c in data["categories"]
        ]
        departments = [str(d) for d in data["departments"]]
        columns = data["products"]
        prices = [float(price) for price in columns["unit_price_usd"]]
        if not all(math.isfinite(price) and price >= 0 for price in prices):
            raise ValueError("every unit_price_usd must be a finite number >= 0")
        if len(set(columns["product_id"])) != len(columns["product_id"]):
            raise ValueError("product ids must be unique")
        products = tuple(
            Product(str(pid), str(name), categories[c].name, departments[d], float(price))
            for pid, name, c, d, price in zip(
                columns["product_id"],
                columns["name"],
                columns["category"],
                columns["department"],
                prices,
                strict=True,
            )
        )
        return cls(
            str(data["source"]),
            products,
            {c.name: c for c in categories},
            Calibration.from_json(data["calibration"]),
        )

    def save(self, path: Path) -> None:
        """Write the catalog as gzipped JSON, atomically (a reader never sees half a file)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        with gzip.open(partial, "wt", encoding="utf-8", compresslevel=6) as out:
            json.dump(self.to_json(), out, separators=(",", ":"))
        partial.replace(path)

    @classmethod
    def load(cls, path: Path) -> Catalog:
        try:
            with gzip.open(path, "rt", encoding="utf-8") as source:
                data = json.load(source)
            return cls.from_json(data)
        except (OSError, ValueError, KeyError, IndexError, TypeError) as error:
            raise ConfigError(f"cannot read the catalog file {path}: {error}") from error


def _builtin_rhythm(category: Category, archetype: Archetype | None) -> Rhythm:
    """A rhythm from the hand-written typical values: one mean per category and archetype,
    gamma-distributed gaps (shape = the archetype's regularity), log-normal basket noise and the
    odd 20% promotion."""
    rng = np.random.default_rng(_BUILTIN_RHYTHM_SEED)
    interval_factor = archetype.interval_factor if archetype else 1.0
    quantity_factor = archetype.quantity_factor if archetype else 1.0
    price_factor = archetype.price_factor if archetype else 1.0
    shape = archetype.regularity if archetype else _DEFAULT_REGULARITY
    ratio = rng.gamma(shape, 1 / shape, _BUILTIN_DRAWS)
    quantity = np.maximum(
        1.0,
        np.rint(
            category.typical_quantity * quantity_factor * rng.lognormal(0, 0.15, _BUILTIN_DRAWS)
        ),
    )
    price = price_factor * rng.uniform(0.95, 1.05, _BUILTIN_DRAWS)
    price[rng.random(_BUILTIN_DRAWS) < 0.08] *= 0.8
    mean = category.typical_interval_days * interval_factor
    return Rhythm(
        Quantiles.constant(mean),
        Quantiles.fit(ratio),
        Quantiles.fit(quantity),
        Quantiles.fit(price),
        median_interval_days=mean,
    )


@cache
def builtin_catalog() -> Catalog:
    """The small hand-written catalog: offline, instant, and what unit tests run on."""
    products = tuple(
        Product(pid, name, category, CATEGORIES[category].department, price)
        for pid, name, category, price in _PRODUCTS
    )
    rhythms = {
        (name, archetype.archetype_id if archetype else ALL_ARCHETYPES): _builtin_rhythm(
            category, archetype
        )
        for name, category in CATEGORIES.items()
        for archetype in (None, *ARCHETYPES.values())
    }
    popular: dict[str, list[str]] = {}
    for product in products:
        popular.setdefault(product.category, []).append(product.product_id)
    calibration = Calibration(
        "built-in typical intervals",
        rhythms,
        archetype_categories={a.archetype_id: a.typical_categories for a in ARCHETYPES.values()},
        popular_products={k: tuple(v) for k, v in popular.items()},
    )
    return Catalog("built-in", products, CATEGORIES, calibration)


_active: Catalog | None = None


def use_catalog(catalog: Catalog) -> None:
    """Make `catalog` the one every core of this process reads (set once at start-up)."""
    global _active  # noqa: PLW0603 - one catalog per process, chosen by configuration
    _active = catalog


def active_catalog() -> Catalog:
    """The catalog chosen at start-up, or the built-in one when none was chosen."""
    return _active or builtin_catalog()


def products() -> tuple[Product, ...]:
    """Every product of the active catalog."""
    return active_catalog().products


def products_by_id() -> dict[str, Product]:
    return active_catalog().by_id


_WORD = re.compile(r"[a-z0-9]+")


def _words(text: str) -> set[str]:
    return {w.removesuffix("s") for w in _WORD.findall(text.lower()) if len(w) > 1}


def resolve(name: str) -> Product | None:
    """The active catalog's product whose name best matches `name` by shared words, or None."""
    return active_catalog().resolve(name)


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


CATALOG_CHOICES = ("completejourney", "builtin")


@dataclass(frozen=True)
class CatalogConfig:
    """Which product catalog every step of this process reads."""

    catalog: str = setting(
        "PANTREE_CATALOG",
        "completejourney",
        "Product catalog: completejourney (92k real products, built into PANTREE_DATA_DIR on "
        "first use), builtin (82 hand-written products), or the path of a catalog file.",
    )
    """All steps of a mesh must use the same catalog: product ids travel between them."""

    def validate(self) -> None:
        if not self.catalog.strip():
            raise ConfigError("PANTREE_CATALOG must not be empty")


def catalog_file(data_dir: str) -> Path:
    """Where the Complete Journey catalog is kept under the data directory."""
    return (
        Path(data_dir).expanduser()
        / "catalog"
        / f"completejourney-{CATALOG_FORMAT.rsplit('/', 1)[-1]}.json.gz"
    )


def open_catalog(choice: str, data_dir: str) -> Catalog:
    """The catalog PANTREE_CATALOG names; the Complete Journey one is built on first use (about
    30 s) and read from the data directory afterwards (about 0.5 s)."""
    if choice == "builtin":
        return builtin_catalog()
    if choice != "completejourney":
        path = Path(choice).expanduser()
        if not path.is_file():
            raise ConfigError(
                f"PANTREE_CATALOG {choice!r} is neither {' nor '.join(CATALOG_CHOICES)} "
                "nor an existing catalog file"
            )
        return Catalog.load(path)
    path = catalog_file(data_dir)
    if not path.is_file():
        from pantree_common.datasets.catalog_build import build_catalog  # noqa: PLC0415

        log.info("building the Complete Journey catalog into %s (once)", path)
        build_catalog().save(path)
    return Catalog.load(path)
