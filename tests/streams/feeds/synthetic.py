"""Synthetic product catalogues for profiler tests: one canonical catalogue, many feed shapes.

Nothing here comes from the shared development feeds: names, values and shapes are invented, so
the profiler is tested on feeds it was not tuned on.
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass, field

TREE: dict[str, dict[str, list[str]]] = {
    "Garden": {
        "Watering": ["Hoses", "Sprinklers", "Watering Cans"],
        "Tools": ["Spades", "Rakes", "Pruners"],
        "Furniture": ["Chairs", "Tables", "Loungers"],
    },
    "Kitchen": {
        "Cookware": ["Frying Pans", "Saucepans", "Woks"],
        "Knives": ["Chef Knives", "Knife Blocks"],
        "Storage": ["Jars", "Lunch Boxes", "Accessories"],
    },
    "Toys": {
        "Puzzles": ["Jigsaws", "3D Puzzles"],
        "Outdoor Play": ["Swings", "Sandpits", "Accessories"],
        "Building": ["Bricks", "Marble Runs"],
    },
    "Sports": {
        "Cycling": ["Helmets", "Bike Lights", "Accessories"],
        "Running": ["Trail Shoes", "Watches"],
        "Fitness": ["Dumbbells", "Yoga Mats", "Kettlebells"],
    },
    "Office": {
        "Paper": ["Notebooks", "Printer Paper"],
        "Desk": ["Lamps", "Organisers"],
        "Writing": ["Pens", "Pencils", "Markers"],
    },
}
BRANDS = [
    "Acme", "Verdant", "Nordwind", "Kestrel", "Bramble", "Solano", "Tidewater", "Quillon", "Ferro",
    "Lumora", "Oakhurst", "Pellucid", "Ravelin", "Stellar", "Umbra", "Vantor", "Wexley", "Yarrow",
]  # fmt: skip
ADJECTIVES = [
    "Pro", "Classic", "Compact", "Deluxe", "Eco", "Heavy Duty", "Lite", "Max", "Mini", "Premium",
    "Sport", "Ultra", "Essential", "Family", "Travel",
]  # fmt: skip
NOUNS = {
    "Hoses": "Garden Hose", "Sprinklers": "Sprinkler", "Watering Cans": "Watering Can",
    "Spades": "Spade", "Rakes": "Rake", "Pruners": "Pruner", "Chairs": "Folding Chair",
    "Tables": "Patio Table", "Loungers": "Sun Lounger", "Frying Pans": "Frying Pan",
    "Saucepans": "Saucepan", "Woks": "Wok", "Chef Knives": "Chef Knife", "Knife Blocks": "Knife Block",
    "Jars": "Glass Jar", "Lunch Boxes": "Lunch Box", "Accessories": "Clip Set", "Jigsaws": "Jigsaw",
    "3D Puzzles": "3D Puzzle", "Swings": "Swing Seat", "Sandpits": "Sandpit", "Bricks": "Brick Set",
    "Marble Runs": "Marble Run", "Helmets": "Bike Helmet", "Bike Lights": "Bike Light",
    "Trail Shoes": "Trail Shoe", "Watches": "GPS Watch", "Dumbbells": "Dumbbell",
    "Yoga Mats": "Yoga Mat", "Kettlebells": "Kettlebell", "Notebooks": "Notebook",
    "Printer Paper": "Copy Paper", "Lamps": "Desk Lamp", "Organisers": "Desk Organiser", "Pens": "Gel Pen",
    "Pencils": "Pencil Set", "Markers": "Marker Pack",
}  # fmt: skip
PLACES = {
    "Italy": ["Tuscany", "Piedmont", "Veneto"],
    "France": ["Bordeaux", "Alsace", "Provence"],
    "Spain": ["Rioja", "Galicia", "Catalonia"],
    "Chile": ["Maipo", "Colchagua"],
    "Germany": ["Mosel", "Baden", "Pfalz"],
}


@dataclass
class Product:
    sku: str
    title: str
    brand: str
    path: list[str]
    price: float
    list_price: float | None
    url: str
    image: str
    description: str
    country: str
    region: str
    grams: int
    keywords: list[str] = field(default_factory=list)


def _slug(text: str) -> str:
    return "-".join("".join(c for c in word.lower() if c.isalnum()) for word in text.split())


def catalogue(n: int = 600, seed: int = 7) -> list[Product]:
    """``n`` products with unique titles, a 3-level path, prices and the rest."""
    rng = random.Random(seed)
    leaves = [(a, b, c) for a, subs in TREE.items() for b, cs in subs.items() for c in cs]
    products: list[Product] = []
    seen: set[str] = set()
    while len(products) < n:
        path = list(rng.choice(leaves))
        brand = rng.choice(BRANDS)
        model = rng.choice(string.ascii_uppercase) + str(rng.randint(10, 999))
        title = f"{brand} {rng.choice(ADJECTIVES)} {NOUNS[path[2]]} {model}"
        if title in seen:
            continue
        seen.add(title)
        sku = f"SKU-{10000 + len(products)}"
        price = rng.choice([4, 9, 12, 19, 24, 29, 39, 49, 79, 99, 149, 249]) + rng.choice(
            [0.99, 0.49, 0.95]
        )
        on_sale = rng.random() < 0.3
        country = rng.choice(list(PLACES))
        words = [
            "Durable", "lightweight", "design", "for", "everyday", "use", "with", "a", "two",
            "year", "warranty", "and", "easy", "care", "materials", "that", "last",
        ]  # fmt: skip
        description = " ".join(rng.sample(words, 12)) + f". {title} is made by {brand}."
        products.append(
            Product(
                sku=sku,
                title=title,
                brand=brand,
                path=path,
                price=round(price * 0.8, 2) if on_sale else price,
                list_price=price if on_sale else None,
                url=f"https://shop.example.com/p/{_slug(title)}-{sku.lower()}",
                image=f"https://cdn.example.com/img/{sku.lower()}.jpg",
                description=description,
                country=country,
                region=rng.choice(PLACES[country]),
                grams=rng.choice([100, 250, 500, 750, 1000]),
                keywords=[word.lower() for word in title.split()[1:3]],
            )
        )
    return products
