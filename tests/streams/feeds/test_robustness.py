"""The profiler on feed shapes and languages the development set lacks.

Each feed is generated here from word lists (nothing from the shared development feeds): a few
hundred records of a catalogue with a three-level category tree, then written the way a real
feed of that kind writes it (an Amazon-like CSV with ``|`` paths and rupee prices, Google
Merchant items with ``g:google_product_category`` next to ``g:product_type``, breadcrumbs as a
list of objects, HTML descriptions, prices in many local formats, Japanese, Indonesian and Polish
keys and titles). Each is also checked with opaque, shuffled keys: key names are a weak signal.
"""

from __future__ import annotations

import html
import json
import random
import string
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from prodcat.streams.feeds.extract import apply_profile
from prodcat.streams.feeds.infer import infer_profile
from prodcat.streams.feeds.profile import FeedProfile
from prodcat.streams.feeds.taxonomy import parse_google_taxonomy

N = 240

# language -> root -> child -> leaves (a product noun per leaf)
TREES: dict[str, dict[str, dict[str, list[str]]]] = {
    "en": {
        "Electronics": {
            "Headphones": ["On-Ear Headphones", "Earbuds", "Gaming Headsets"],
            "Cables & Chargers": ["USB Cables", "Wall Chargers", "Power Banks"],
            "Smart Home": ["Smart Plugs", "Smart Bulbs"],
        },
        "Home & Kitchen": {
            "Cookware": ["Frying Pans", "Saucepans", "Pressure Cookers"],
            "Small Appliances": ["Kettles", "Toasters", "Blenders"],
            "Storage": ["Food Containers", "Spice Racks"],
        },
        "Sports & Outdoors": {
            "Fitness": ["Yoga Mats", "Dumbbells", "Resistance Bands"],
            "Cycling": ["Bike Lights", "Helmets"],
            "Camping": ["Tents", "Sleeping Bags", "Headlamps"],
        },
        "Beauty": {
            "Skin Care": ["Face Creams", "Serums"],
            "Hair Care": ["Shampoos", "Hair Dryers"],
        },
    },
    "ja": {
        "家電": {
            "キッチン家電": ["電気ケトル", "トースター", "ミキサー"],
            "生活家電": ["掃除機", "加湿器", "扇風機"],
        },
        "日用品": {
            "キッチン用品": ["フライパン", "保存容器", "包丁"],
            "バス用品": ["バスタオル", "シャンプー"],
        },
        "スポーツ": {
            "フィットネス": ["ヨガマット", "ダンベル"],
            "アウトドア": ["テント", "寝袋", "ランタン"],
        },
    },
    "id": {
        "Elektronik": {
            "Audio": ["Headphone", "Speaker Bluetooth", "Earphone"],
            "Aksesoris Komputer": ["Mouse", "Keyboard", "Kabel USB"],
        },
        "Rumah Tangga": {
            "Peralatan Dapur": ["Panci", "Wajan", "Rice Cooker"],
            "Kebersihan": ["Sapu", "Pel Lantai"],
        },
        "Olahraga": {
            "Kebugaran": ["Matras Yoga", "Dumbel"],
            "Sepeda": ["Lampu Sepeda", "Helm Sepeda"],
        },
    },
    "pl": {
        "Elektronika": {
            "Słuchawki": ["Słuchawki nauszne", "Słuchawki douszne"],
            "Ładowarki": ["Ładowarki sieciowe", "Powerbanki", "Kable USB"],
        },
        "Dom i ogród": {
            "Kuchnia": ["Patelnie", "Garnki", "Czajniki elektryczne"],
            "Sprzątanie": ["Odkurzacze", "Mopy"],
        },
        "Sport i turystyka": {
            "Fitness": ["Maty do jogi", "Hantle"],
            "Turystyka": ["Namioty", "Śpiwory", "Latarki czołowe"],
        },
    },
}
BRANDS = {
    "en": ["Zenvo", "Kitora", "Ampliq", "Brightwell", "Corvane", "Dunmore", "Ellory", "Fennick"],
    "ja": ["ミドリ電機", "サクラ工房", "ヤマト製作所", "ひかり堂", "コダマ", "ツバサ"],
    "id": ["Sinar Jaya", "Maju Bersama", "Cahaya", "Nusantara", "Garuda Home", "Rajawali"],
    "pl": ["Polmet", "Zefir", "Wisła", "Kormoran", "Tatra", "Bursztyn"],
}
ADJECTIVES = {
    "en": ["Pro", "Ultra", "Compact", "Wireless", "Premium", "Classic", "Max", "Lite", "Eco"],
    "ja": ["高性能", "コンパクト", "軽量", "大容量", "静音", "プレミアム"],
    "id": ["Premium", "Murah", "Original", "Anti Lengket", "Portable", "Jumbo"],
    "pl": ["Premium", "Kompaktowy", "Bezprzewodowy", "Lekki", "Profesjonalny", "Klasyczny"],
}
COLOURS = {
    "en": ["Black", "White", "Blue", "Red", "Grey"],
    "ja": ["ブラック", "ホワイト", "ブルー", "レッド"],
    "id": ["Hitam", "Putih", "Biru", "Merah"],
    "pl": ["czarny", "biały", "niebieski", "czerwony"],
}
SENTENCES = {
    "en": [
        "Built to last with durable materials.",
        "Easy to clean and simple to use every day.",
        "Comes with a two-year warranty.",
        "Designed for comfort and performance.",
        "Lightweight and easy to carry.",
        "A great gift for friends and family.",
    ],
    "ja": [
        "毎日の生活に便利です。",
        "お手入れが簡単です。",
        "一年間の保証付き。",
        "軽くて持ち運びに便利。",
    ],
    "id": ["Bahan berkualitas dan tahan lama.", "Mudah dibersihkan.", "Garansi resmi satu tahun."],
    "pl": ["Wykonany z trwałych materiałów.", "Łatwy w czyszczeniu.", "Dwa lata gwarancji."],
}


@dataclass
class Item:
    sku: str
    title: str
    brand: str
    path: list[str]
    price: float
    list_price: float
    description: str
    colour: str


def catalogue(lang: str, n: int = N, seed: int = 1, whole: bool = False) -> list[Item]:
    """``n`` products in ``lang`` with unique titles; ``whole`` gives prices without decimals."""
    rng = random.Random(seed)
    tree = TREES[lang]
    leaves = [[a, b, c] for a, bs in tree.items() for b, cs in bs.items() for c in cs]
    items: list[Item] = []
    seen: set[str] = set()
    while len(items) < n:
        path = list(rng.choice(leaves))
        brand = rng.choice(BRANDS[lang])
        colour = rng.choice(COLOURS[lang])
        model = rng.choice(string.ascii_uppercase) + str(rng.randint(10, 9999))
        noun = path[2] if lang in ("ja", "id") else path[2].rstrip("s")
        title = f"{brand} {rng.choice(ADJECTIVES[lang])} {noun} {model} {colour}"
        if title in seen:
            continue
        seen.add(title)
        if whole:
            price = float(rng.choice([15, 25, 49, 89, 129, 349, 1299, 2499]) * 1000)
        else:
            price = rng.choice([9, 19, 29, 49, 99, 199, 499, 1299]) + rng.choice([0.99, 0.5, 0.0])
        list_price = round(price * rng.choice([1.0, 1.0, 1.25, 1.5, 2.0]), 0 if whole else 2)
        items.append(
            Item(
                sku=f"{rng.choice(string.ascii_uppercase)}{rng.randint(100000, 999999)}",
                title=title,
                brand=brand,
                path=path,
                price=price,
                list_price=list_price,
                description=" ".join(rng.sample(SENTENCES[lang], 2)),
                colour=colour,
            )
        )
    return items


def opaque(
    records: list[dict[str, Any]], seed: int = 3
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Every key (nested ones too) renamed to ``c1``, ``c2``, ... consistently; key order shuffled."""
    rng = random.Random(seed)
    names: dict[str, str] = {}

    def rename(value: Any) -> Any:
        if isinstance(value, dict):
            items = [
                (names.setdefault(k, f"c{len(names) + 1}"), rename(v)) for k, v in value.items()
            ]
            rng.shuffle(items)
            return dict(items)
        if isinstance(value, list):
            return [rename(item) for item in value]
        return value

    return [rename(record) for record in records], names


def _apply(profile: FeedProfile, record: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    return apply_profile(record, profile, feed="t", key=None, seen_at_ms=0, **kwargs)


def _check(
    records: list[dict[str, Any]],
    items: list[Item],
    *,
    price: Callable[[Item], float] | None = lambda item: item.price,
    currency: str | None = None,
    path: Callable[[Item], list[str]] = lambda item: item.path,
    taxonomy: dict[int, list[str]] | None = None,
) -> FeedProfile:
    """Infer from the records and check title, price and category path on every record."""
    profile = infer_profile(records, feed="t", google_taxonomy=taxonomy)
    titles = prices = paths = 0
    for record, item in zip(records, items, strict=True):
        product = _apply(profile, record, google_taxonomy=taxonomy)
        titles += product["title"] == item.title
        if price is not None:
            prices += product["price"] == {"value": price(item), "currency": currency}
        paths += product["category_path"] == path(item)
    fields = {role: source.sources for role, source in profile.fields.items()}
    assert titles >= 0.99 * len(items), fields
    if price is not None:
        assert prices >= 0.99 * len(items), (fields, _apply(profile, records[0])["price"])
    assert paths >= 0.95 * len(items), (fields, _apply(profile, records[0])["category_path"])
    return profile


def _both(records: list[dict[str, Any]], items: list[Item], **kwargs: Any) -> None:
    """:func:`_check` with the keys as written and with opaque, shuffled keys."""
    _check(records, items, **kwargs)
    hidden, _ = opaque(records)
    _check(hidden, items, **kwargs)


def _rupees(value: float) -> str:
    return f"₹{int(value):,}"


# --- Amazon-like CSV: "|" paths without spaces, rupee prices, ratings and "|" bullet lists ---


def _amazon(items: list[Item], rng: random.Random) -> list[dict[str, Any]]:
    records = []
    for item in items:
        reviewers = [
            "".join(rng.choice(string.ascii_uppercase + string.digits) for _ in range(28))
            for _ in range(rng.randint(1, 4))
        ]
        records.append(
            {
                "product_id": "B0" + "".join(rng.choice(string.ascii_uppercase) for _ in range(8)),
                "product_name": item.title,
                "category": "|".join(level.replace(" ", "") for level in item.path),
                "discounted_price": _rupees(item.price * 80),
                "actual_price": _rupees(item.list_price * 80 + 100),
                "discount_percentage": f"{rng.randint(5, 80)}%",
                "rating": f"{rng.uniform(2.5, 5.0):.1f}",
                "rating_count": f"{rng.randint(10, 99000):,}",
                "about_product": "|".join(rng.sample(SENTENCES["en"], 3)) + f"|{item.title}",
                "user_id": ",".join(reviewers),
                "review_title": rng.choice(["Good", "Value for money", "Nice product", "Okay"]),
                "img_link": f"https://m.media-amazon.com/images/I/{item.sku}.jpg",
                "product_link": f"https://www.amazon.in/dp/{item.sku}",
            }
        )
    return records


def test_amazon_like_csv_with_pipe_paths_and_rupees() -> None:
    items = catalogue("en", seed=11)
    records = _amazon(items, random.Random(11))
    _both(
        records,
        items,
        price=lambda item: float(int(item.price * 80)),
        currency="INR",
        path=lambda item: [level.replace(" ", "") for level in item.path],
    )
    profile = infer_profile(records, feed="t")
    assert profile.fields["category"].delimiter == "|"
    assert profile.fields["list_price"].sources == ("actual_price",)


# --- Google Merchant: the feed's own product_type next to google_product_category ---

TAXONOMY_TEXT = """# Google_Product_Taxonomy_Version: test
222 - Electronics
223 - Electronics > Audio
505771 - Electronics > Audio > Audio Components > Headphones & Headsets
543626 - Electronics > Audio > Audio Components > Headphones & Headsets > Headphones
258 - Electronics > Electronics Accessories > Power
505295 - Electronics > Electronics Accessories > Power > Power Adapters & Chargers
536 - Home & Garden
638 - Home & Garden > Kitchen & Dining
654 - Home & Garden > Kitchen & Dining > Cookware & Bakeware > Cookware
730 - Home & Garden > Kitchen & Dining > Kitchen Appliances
736 - Home & Garden > Kitchen & Dining > Kitchen Appliances > Electric Kettles
2901 - Home & Garden > Kitchen & Dining > Food Storage
988 - Sporting Goods
990 - Sporting Goods > Exercise & Fitness
3276 - Sporting Goods > Exercise & Fitness > Yoga & Pilates > Yoga Mats
1011 - Sporting Goods > Outdoor Recreation > Cycling
1013 - Sporting Goods > Outdoor Recreation > Camping & Hiking > Tents
469 - Health & Beauty
2915 - Health & Beauty > Personal Care > Cosmetics > Skin Care
"""
TAXONOMY = parse_google_taxonomy(TAXONOMY_TEXT)
GOOGLE_IDS = {  # the test catalogue's child level -> a Google category id
    "Headphones": 543626,
    "Cables & Chargers": 505295,
    "Smart Home": 222,
    "Cookware": 654,
    "Small Appliances": 730,
    "Storage": 2901,
    "Fitness": 3276,
    "Cycling": 1011,
    "Camping": 1013,
    "Skin Care": 2915,
    "Hair Care": 469,
}


def _gmc(items: list[Item], *, product_type: bool, google: str | None) -> list[dict[str, Any]]:
    records = []
    for item in items:
        record: dict[str, Any] = {
            "g:id": item.sku,
            "g:title": item.title,
            "g:description": f"<p>{html.escape(item.description)}</p><ul><li>{item.colour}</li></ul>",
            "g:link": f"https://shop.example.net/p/{item.sku.lower()}",
            "g:image_link": f"https://shop.example.net/img/{item.sku.lower()}.jpg",
            "g:availability": "in stock",
            "g:price": f"{item.list_price:.2f} USD",
            "g:sale_price": f"{item.price:.2f} USD" if item.price < item.list_price else "",
            "g:brand": item.brand,
            "g:condition": "new",
        }
        google_id = GOOGLE_IDS[item.path[1]]
        if google == "id":
            record["g:google_product_category"] = str(google_id)
        elif google == "text":
            record["g:google_product_category"] = " > ".join(TAXONOMY[google_id])
        if product_type:
            # as written in an XML file read without decoding entities
            record["g:product_type"] = html.escape(" > ".join(item.path)).replace(">", "&gt;")
        records.append(record)
    return records


@pytest.mark.parametrize("google", ["id", "text"])
def test_merchant_product_type_wins_over_the_google_category(google: str) -> None:
    items = catalogue("en", seed=12)
    records = _gmc(items, product_type=True, google=google)
    _both(records, items, price=None, taxonomy=TAXONOMY)
    profile = infer_profile(records, feed="t", google_taxonomy=TAXONOMY)
    assert profile.fields["category"].sources == ("g:product_type",)


def test_google_category_ids_alone_map_through_the_taxonomy() -> None:
    items = catalogue("en", seed=13)
    records = _gmc(items, product_type=False, google="id")
    _both(
        records,
        items,
        price=None,
        path=lambda item: TAXONOMY[GOOGLE_IDS[item.path[1]]],
        taxonomy=TAXONOMY,
    )


def test_google_category_text_alone_is_the_category() -> None:
    items = catalogue("en", seed=14)
    records = _gmc(items, product_type=False, google="text")
    _both(records, items, price=None, path=lambda item: TAXONOMY[GOOGLE_IDS[item.path[1]]])


def test_merchant_sale_price_and_html_description() -> None:
    items = catalogue("en", seed=15)
    records = _gmc(items, product_type=True, google=None)
    profile = _check(records, items, price=lambda item: item.price, currency="USD")
    assert profile.fields["description"].sources == ("g:description",)
    assert profile.fields["list_price"].sources == ("g:price",)


# --- breadcrumbs as a list of objects, prices in an offer object ---


def test_breadcrumb_objects_and_dollar_prices() -> None:
    items = catalogue("en", seed=16)
    records = [
        {
            "id": item.sku,
            "name": item.title,
            "breadcrumb": [
                {
                    "name": level,
                    "url": "/"
                    + "/".join(
                        p.lower().replace(" & ", "-and-").replace(" ", "-")
                        for p in item.path[: i + 1]
                    ),
                }
                for i, level in enumerate(item.path)
            ],
            "offers": {"price": f"${item.price * 100:,.2f}", "availability": "InStock"},
            "brand": {"name": item.brand},
            "color": item.colour,
        }
        for item in items
    ]
    _both(records, items, price=lambda item: round(item.price * 100, 2), currency="USD")


# --- prices written the local way ---

PRICE_FORMATS: list[tuple[str, bool, Callable[[float], str], str]] = [
    (
        "eu",
        False,
        lambda v: f"{v:,.2f} €".replace(",", " ").replace(".", ",").replace(" ", "."),
        "EUR",
    ),
    ("us", False, lambda v: f"${v:,.2f}", "USD"),
    ("pl", False, lambda v: f"{v:,.2f} zł".replace(",", " ").replace(".", ","), "PLN"),
    ("jp", True, lambda v: f"¥{int(v / 100):,}", "JPY"),
    ("id_prefix", True, lambda v: f"Rp {int(v):,}".replace(",", "."), "IDR"),
    ("id_suffix", True, lambda v: f"{int(v):,} IDR".replace(",", "."), "IDR"),
]


@pytest.mark.parametrize(("name", "whole", "write", "currency"), PRICE_FORMATS)
def test_local_price_formats(
    name: str, whole: bool, write: Callable[[float], str], currency: str
) -> None:
    items = catalogue("en", seed=17, whole=whole)
    records = [
        {
            "sku": item.sku,
            "product": item.title,
            "section": " / ".join(item.path),
            "amount": write(item.price),
            "maker": item.brand,
        }
        for item in items
    ]
    expected = (
        (lambda item: float(int(item.price / 100))) if name == "jp" else (lambda item: item.price)
    )
    _both(records, items, price=expected, currency=currency)


# --- HTML descriptions next to a short name ---


def test_html_description_next_to_a_short_name() -> None:
    items = catalogue("en", seed=18)
    records = [
        {
            "ref": item.sku,
            "label": item.title,
            "body": "<div class='desc'><h2>"
            + html.escape(item.title)
            + "</h2><p>"
            + html.escape(item.description)
            + "</p><ul><li>Colour: "
            + item.colour
            + "</li><li>Brand: "
            + item.brand
            + "</li></ul></div>",
            "path": " > ".join(item.path),
            "cost": f"{item.price:.2f}",
        }
        for item in items
    ]
    _both(records, items)
    profile = infer_profile(records, feed="t")
    assert profile.fields["title"].sources[0] == "label"
    assert profile.fields["description"].sources == ("body",)


# --- Japanese, Indonesian and Polish feeds, keys and titles in the language ---


def test_japanese_feed() -> None:
    items = catalogue("ja", seed=19, whole=True)
    records = [
        {
            "商品コード": item.sku,
            "商品名": item.title,
            "ブランド名": item.brand,
            "カテゴリ": " > ".join(item.path),
            "販売価格": f"¥{int(item.price / 100):,}",
            "商品説明": item.title + "。" + item.description * 2,
            "カラー": item.colour,
        }
        for item in items
    ]
    _both(records, items, price=lambda item: float(int(item.price / 100)), currency="JPY")


def test_indonesian_feed() -> None:
    items = catalogue("id", seed=20, whole=True)
    records = [
        {
            "kode_produk": item.sku,
            "nama_produk": item.title,
            "merek": item.brand,
            "kategori": "/".join(item.path),
            "harga": f"Rp{int(item.price):,}".replace(",", "."),
            "harga_coret": f"Rp{int(item.list_price):,}".replace(",", "."),
            "deskripsi": item.description,
            "warna": item.colour,
            "terjual": f"{random.Random(item.sku).randint(1, 900)} terjual",
        }
        for item in items
    ]
    _both(records, items, price=lambda item: item.price, currency="IDR")


def test_polish_feed_with_category_columns() -> None:
    items = catalogue("pl", seed=21)
    rng = random.Random(21)
    records = [
        {
            "id_produktu": item.sku,
            "nazwa": item.title,
            "producent": item.brand,
            "kategoria_glowna": item.path[0],
            "podkategoria": item.path[1],
            "kategoria": item.path[2],
            "cena": f"{item.price:,.2f} zł".replace(",", " ").replace(".", ","),
            "ocena": f"{rng.uniform(1, 5):.1f}".replace(".", ","),
            "opis": item.description,
            "kolor": item.colour,
        }
        for item in items
    ]
    _both(records, items, price=lambda item: item.price, currency="PLN")


def test_generated_feeds_are_json_serialisable() -> None:
    # the feeds above are what a reader would produce: plain JSON values
    items = catalogue("en", seed=22)
    json.dumps(_amazon(items, random.Random(1)), ensure_ascii=False)
    json.dumps(_gmc(items, product_type=True, google="id"))


# --- an optional qualifier is not the title ---


def test_an_optional_subtitle_loses_to_a_name_that_is_always_there() -> None:
    items = catalogue("en", seed=23)
    rng = random.Random(23)
    qualifiers = [
        "Limited Edition 2023",
        "Twin Pack with Travel Case",
        "Gift Box Special Edition",
        "Refurbished Grade A Warranty",
    ]
    records = []
    for item in items:
        record: dict[str, Any] = {"name": item.title, "section": " > ".join(item.path)}
        if rng.random() < 0.88:  # missing in about one record in eight
            record["subtitle"] = f"{rng.choice(qualifiers)} {rng.randint(1, 999)}"
        record["price"] = item.price
        records.append(record)
    for start in (0, 80, 160):  # the stream may start anywhere
        window = records[start:] + records[:start]
        profile = infer_profile(window, feed="t")
        assert profile.fields["title"].sources[0] == "name"


@pytest.mark.parametrize(
    ("text", "value", "currency"),
    [
        ("1.299,00 €", 1299.0, "EUR"),
        ("$1,299.00", 1299.0, "USD"),
        ("1 299,00 zł", 1299.0, "PLN"),
        ("¥1,299", 1299.0, "JPY"),
        ("Rp 15.000", 15000.0, "IDR"),
        ("Rp15.000.000", 15000000.0, "IDR"),
        ("15.000 IDR", 15000.0, "IDR"),
        ("Rp 15.000,50", 15000.5, "IDR"),
    ],
)
def test_local_price_strings_parse(text: str, value: float, currency: str) -> None:
    from prodcat.streams.prices import parse_price

    assert parse_price(text) == {"value": value, "currency": currency}
