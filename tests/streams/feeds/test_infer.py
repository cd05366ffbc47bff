"""The profiler on synthetic feeds: it must decide by values, whatever the keys are called."""

from __future__ import annotations

import random
import uuid
from typing import Any

import pytest

from prodcat.streams.feeds.extract import apply_profile
from prodcat.streams.feeds.infer import choose_profile, infer_profile, infer_profiles, segment
from prodcat.streams.feeds.profile import FeedProfile, FieldSource
from prodcat.streams.normalize import NormalizationError

from .synthetic import Product, catalogue

PRODUCTS = catalogue()


def _apply(profile: FeedProfile, record: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    return apply_profile(record, profile, feed="test", key=None, seen_at_ms=0, **kwargs)


def _check_paths(profile: FeedProfile, records: list[dict[str, Any]], **kwargs: Any) -> None:
    for product, record in zip(PRODUCTS, records, strict=True):
        assert _apply(profile, record, **kwargs)["category_path"] == product.path


def _shuffled(record: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    items = list(record.items())
    rng.shuffle(items)
    return dict(items)


def test_renamed_and_shuffled_keys_are_read_by_content() -> None:
    rng = random.Random(1)
    records = [
        _shuffled(
            {
                "c01": p.title,
                "c02": p.brand,
                "c03": " > ".join(p.path),
                "c04": f"{p.price:.2f}",
                "c05": p.url,
                "c06": p.image,
                "c07": p.sku,
                "c08": p.description,
            },
            rng,
        )
        for p in PRODUCTS
    ]
    profile = infer_profile(records, feed="opaque")
    fields = profile.fields
    assert fields["title"].sources[0] == "c01"
    assert fields["category"].sources == ("c03",)
    assert (fields["category"].kind, fields["category"].delimiter) == ("delimited", ">")
    assert fields["price"].sources == ("c04",)
    assert fields["product_url"].sources == ("c05",)
    assert fields["image_urls"].sources == ("c06",)
    assert fields["source_id"].sources == ("c07",)
    assert fields["brand"].sources == ("c02",)
    assert fields["description"].sources == ("c08",)
    _check_paths(profile, records)
    product = _apply(profile, records[0])
    assert product["title"] == PRODUCTS[0].title
    assert product["price"] == {"value": PRODUCTS[0].price, "currency": None}


def test_non_english_keys_decimal_commas_and_sale_price() -> None:
    def money(value: float) -> str:
        return f"{value:.2f} €".replace(".", ",")

    records = []
    for p in PRODUCTS:
        record = {
            "Artikelnummer": p.sku,
            "Artikelbezeichnung": p.title,
            "Marke": p.brand,
            "Kategoriepfad": "/".join(p.path),
            "Verkaufspreis": money(p.price),
            "Streichpreis": money(p.list_price) if p.list_price else "",
            "Bild": p.image,
        }
        records.append(record)
    profile = infer_profile(records, feed="de")
    fields = profile.fields
    assert fields["title"].sources[0] == "Artikelbezeichnung"
    assert fields["brand"].sources == ("Marke",)
    assert (fields["category"].kind, fields["category"].delimiter) == ("delimited", "/")
    assert fields["price"].sources[0] == "Verkaufspreis"
    assert fields["list_price"].sources == ("Streichpreis",)
    _check_paths(profile, records)
    on_sale = next(i for i, p in enumerate(PRODUCTS) if p.list_price)
    product = _apply(profile, records[on_sale])
    assert product["price"] == {"value": PRODUCTS[on_sale].price, "currency": "EUR"}
    assert product["list_price"] == {"value": PRODUCTS[on_sale].list_price, "currency": "EUR"}


def test_title_under_a_description_key() -> None:
    records = [
        {"id": p.sku, "description": p.title, "category": " > ".join(p.path), "price": p.price}
        for p in PRODUCTS
    ]
    profile = infer_profile(records, feed="desc")
    assert profile.fields["title"].sources == ("description",)
    assert _apply(profile, records[3])["title"] == PRODUCTS[3].title


@pytest.mark.parametrize("order", [(2, 0, 1), (1, 2, 0), (0, 1, 2), (2, 1, 0)])
def test_hierarchy_over_columns_in_any_order(order: tuple[int, int, int]) -> None:
    names = ["f_alpha", "f_beta", "f_gamma"]
    records = []
    for p in PRODUCTS:
        record: dict[str, Any] = {"item": p.title, "cost": p.price}
        for name, level in zip(names, order, strict=True):
            record[name] = p.path[level]
        records.append(record)
    profile = infer_profile(records, feed="cols")
    category = profile.fields["category"]
    assert category.kind == "columns"
    expected = tuple(names[order.index(level)] for level in range(3))
    assert category.sources == expected
    _check_paths(profile, records)


def test_hierarchy_in_nested_objects_with_parallel_ids() -> None:
    ids = {label: str(i) for i, label in enumerate(sorted({x for p in PRODUCTS for x in p.path}))}
    records = [
        {
            "meta": {"requestId": str(uuid.UUID(int=i))},
            "product": {
                "info": {"label": p.title, "maker": p.brand, "code": p.sku},
                "taxonomy": {
                    "leafId": ids[p.path[2]],
                    "leaf": p.path[2],
                    "topId": ids[p.path[0]],
                    "top": p.path[0],
                    "midId": ids[p.path[1]],
                    "mid": p.path[1],
                },
                "offers": [
                    {"amount": p.price, "currency": "EUR"},
                    {"amount": 1.0, "currency": "EUR"},
                ],
            },
        }
        for i, p in enumerate(PRODUCTS)
    ]
    profile = infer_profile(records, feed="nested")
    fields = profile.fields
    assert fields["title"].sources[0] == "product.info.label"
    assert fields["category"].sources == (
        "product.taxonomy.top",
        "product.taxonomy.mid",
        "product.taxonomy.leaf",
    )
    assert fields["price"].sources == ("product.offers[].amount",)
    assert fields["source_id"].sources == ("product.info.code",)
    _check_paths(profile, records)
    assert _apply(profile, records[0])["price"] == {"value": PRODUCTS[0].price, "currency": "EUR"}


def test_numeric_google_category_ids() -> None:
    taxonomy = {
        166: ["Apparel & Accessories"],
        1604: ["Apparel & Accessories", "Clothing"],
        212: ["Apparel & Accessories", "Clothing", "Shirts & Tops"],
        536: ["Home & Garden"],
        638: ["Home & Garden", "Kitchen & Dining"],
        689: ["Home & Garden", "Lawn & Garden"],
        1011: ["Sporting Goods"],
        1013: ["Sporting Goods", "Athletics"],
    }
    rng = random.Random(3)
    chosen = [rng.choice(list(taxonomy)) for _ in PRODUCTS]
    records = [
        {"title": p.title, "google_product_category": str(gid) if i % 2 else gid, "price": p.price}
        for i, (p, gid) in enumerate(zip(PRODUCTS, chosen, strict=True))
    ]
    profile = infer_profile(records, feed="gmc", google_taxonomy=taxonomy)
    assert profile.fields["category"].kind == "google_id"
    for record, gid in zip(records, chosen, strict=True):
        assert _apply(profile, record, google_taxonomy=taxonomy)["category_path"] == taxonomy[gid]


def test_integer_cents_confirmed_by_unit_prices() -> None:
    records = []
    for p in PRODUCTS:
        cents = round(p.price * 100)
        per_kg = f"{cents / p.grams * 10:.2f}".replace(".", ",")
        records.append(
            {"name": p.title, "preis": cents, "menge": f"{p.grams}g (1 kg = {per_kg} €)"}
        )
    profile = infer_profile(records, feed="cents")
    price = profile.fields["price"]
    assert (price.sources, price.scale) == (("preis",), 0.01)
    assert _apply(profile, records[5])["price"] == {"value": PRODUCTS[5].price, "currency": "EUR"}


def test_integer_prices_without_evidence_stay_whole() -> None:
    records = [{"name": p.title, "pris": round(p.price) * 10, "volym": "750 ml"} for p in PRODUCTS]
    profile = infer_profile(records, feed="whole")
    assert profile.fields["price"].scale == 1.0
    assert _apply(profile, records[0])["price"] == {
        "value": round(PRODUCTS[0].price) * 10.0,
        "currency": None,
    }


def test_decimal_comma_strings() -> None:
    records = [{"nome": p.title, "preco": f"{p.price:.2f}".replace(".", ",")} for p in PRODUCTS]
    profile = infer_profile(records, feed="pt")
    assert _apply(profile, records[1])["price"] == {"value": PRODUCTS[1].price, "currency": None}


def test_keyword_list_is_not_a_category() -> None:
    records = [{"title": p.title, "keywords": p.keywords, "tags": list(p.path)} for p in PRODUCTS]
    profile = infer_profile(records, feed="kw")
    assert profile.fields["category"].sources == ("tags",)
    assert profile.fields["category"].kind == "list"
    only_keywords = [{"title": p.title, "keywords": p.keywords} for p in PRODUCTS]
    assert "category" not in infer_profile(only_keywords, feed="kw2").fields


def test_geography_nesting_is_not_a_category() -> None:
    records = [
        {
            "title": p.title,
            "country": p.country,
            "region": p.region,
            "cat_a": p.path[0],
            "cat_b": p.path[1],
        }
        for p in PRODUCTS
    ]
    profile = infer_profile(records, feed="geo")
    assert profile.fields["category"].sources == ("cat_a", "cat_b")
    only_geography = [
        {"title": p.title, "country": p.country, "region": p.region} for p in PRODUCTS
    ]
    assert "category" not in infer_profile(only_geography, feed="geo2").fields


def test_slash_inside_level_names() -> None:
    paths = [
        ["Baby", "Nappies", "Nappies 13-18kg/+18kg (T5)"],
        ["Baby", "Nappies", "Nappies <2kg/2-5kg (T0)"],
        ["Drinks", "Wine", "Port Vintage / LBV"],
        ["Drinks", "Wine", "Red Wine"],
        ["Drinks", "Beer", "Lager"],
        ["Baby", "Food", "Purees"],
    ]
    records = [
        {"title": p.title, "category": "/".join(paths[i % len(paths)])}
        for i, p in enumerate(PRODUCTS)
    ]
    profile = infer_profile(records, feed="slash")
    assert (profile.fields["category"].delimiter, profile.fields["category"].split) == (
        "/",
        "tight",
    )
    for i, record in enumerate(records[:12]):
        assert _apply(profile, record)["category_path"] == paths[i % len(paths)]


@pytest.mark.parametrize("delimiter", ["::", " - ", " -> ", "~", " : "])
def test_a_delimiter_found_in_the_values(delimiter: str) -> None:
    """A path delimiter prodcat does not list is found as the run of marks in most values; the
    same mark inside a name ("T-Shirts" in a " - " path) stays in the name."""
    extra = ["Clothing", "Tops", "T-Shirts"]
    records = [
        {"title": p.title, "price": p.price, "path": delimiter.join(p.path)} for p in PRODUCTS
    ]
    records[5]["path"] = delimiter.join(extra)
    profile = infer_profile(records, feed="found")
    assert profile.fields["category"].delimiter == delimiter.strip()
    expected = [p.path for p in PRODUCTS]
    expected[5] = extra
    for record, path in zip(records, expected, strict=True):
        assert _apply(profile, record)["category_path"] == path


def test_placeholder_levels_are_dropped() -> None:
    records = [
        {
            "title": p.title,
            "c1": p.path[0],
            "c2": p.path[1],
            "c3": "undefined" if i % 7 == 0 else p.path[2],
        }
        for i, p in enumerate(PRODUCTS)
    ]
    profile = infer_profile(records, feed="blank")
    assert profile.fields["category"].sources == ("c1", "c2", "c3")
    assert _apply(profile, records[0])["category_path"] == PRODUCTS[0].path[:2]


def test_overrides_win_and_survive_reprofiling() -> None:
    records = [
        {"title": p.title, "sub": p.brand + " " + p.path[2], "price": p.price} for p in PRODUCTS
    ]
    profile = infer_profile(records, feed="ov", overrides={"title": "sub"})
    assert profile.fields["title"].sources == ("sub",)
    assert profile.fields["title"].evidence == "operator override"
    again = infer_profile(records, feed="ov", overrides=profile.overrides, version=2)
    assert again.fields["title"].sources == ("sub",)
    assert again.overrides == profile.overrides
    with pytest.raises(ValueError, match="unknown role"):
        infer_profile(records, feed="ov", overrides={"colour": "sub"})


def test_several_record_shapes_get_one_profile_each() -> None:
    first = [
        {"title": p.title, "price": p.price, "cat": " > ".join(p.path)} for p in PRODUCTS[:300]
    ]
    second = [
        {"data": {"name": p.title, "amount": f"{p.price} USD"}, "levels": list(p.path)}
        for p in PRODUCTS[300:]
    ]
    mixed = [record for pair in zip(first, second, strict=True) for record in pair]
    shapes = segment(mixed)
    assert len(shapes) == 2
    profiles = list(infer_profiles(mixed, feed="mix").values())
    assert {p.fields["title"].sources[0] for p in profiles} == {"title", "data.name"}
    for record, product in ((first[0], PRODUCTS[0]), (second[0], PRODUCTS[300])):
        chosen = choose_profile(record, profiles)
        assert chosen is not None
        assert _apply(chosen, record)["category_path"] == product.path


def test_optional_keys_do_not_split_a_feed() -> None:
    records: list[dict[str, Any]] = []
    for i, p in enumerate(PRODUCTS):
        record: dict[str, Any] = {"name": p.title, "price": p.price}
        if i % 3:
            record["subtitle"] = p.brand
        records.append(record)
    assert list(segment(records)) == [""]


def test_evidence_and_examples_are_filled() -> None:
    records = [
        {"title": p.title, "category": " > ".join(p.path), "price": p.price} for p in PRODUCTS
    ]
    profile = infer_profile(records, feed="ev")
    for source in profile.fields.values():
        assert 0.0 <= source.confidence <= 1.0
        assert source.evidence
    assert profile.fields["title"].examples[0] == PRODUCTS[0].title
    assert profile.sample_size == len(PRODUCTS)
    assert profile.keys == ("category", "price", "title")


def test_small_sample_still_profiles() -> None:
    records = [
        {"title": p.title, "category": " > ".join(p.path), "price": p.price} for p in PRODUCTS[:30]
    ]
    profile = infer_profile(records, feed="small")
    assert profile.fields["title"].sources == ("title",)
    assert profile.fields["category"].sources == ("category",)


def test_empty_sample_gives_an_empty_profile() -> None:
    assert infer_profile([], feed="none").fields == {}


def test_products_compare(monkeypatch: pytest.MonkeyPatch) -> None:
    del monkeypatch
    product: Product = PRODUCTS[0]
    assert FieldSource("title", ("x",)).with_examples([product.title]).examples == (product.title,)


def test_unspaced_script_and_opaque_keys() -> None:
    rng = random.Random(4)
    levels = [
        ("家電", "キッチン家電", "電気ケトル"),
        ("家電", "生活家電", "掃除機"),
        ("日用品", "キッチン用品", "フライパン"),
    ]
    brands = ["象印", "タイガー", "パナソニック", "シャープ"]
    records = []
    for i in range(300):
        path, brand = rng.choice(levels), rng.choice(brands)
        title = f"{brand} {path[2]}{rng.choice(['ステンレス製', '保温ボトル', 'ドライヤー'])} {100 + i}ml"
        records.append(
            {
                "k1": title,
                "k2": title + "。" + "高品質な製品です。毎日の生活に便利です。" * 3,
                "k3": " > ".join(path),
                "k4": f"¥{rng.randint(1000, 20000):,}",
                "k5": brand,
            }
        )
    profile = infer_profile(records, feed="jp")
    fields = profile.fields
    assert (fields["title"].sources, fields["description"].sources) == (("k1",), ("k2",))
    assert (fields["category"].sources, fields["price"].sources) == (("k3",), ("k4",))
    assert fields["brand"].sources == ("k5",)
    assert _apply(profile, records[0])["price"]["currency"] == "JPY"


def test_pipe_paths_and_rupee_prices_with_ratings_around() -> None:
    rng = random.Random(5)
    records = [
        {
            "product_name": p.title,
            "category": "|".join(level.replace(" ", "") for level in p.path),
            "discounted_price": f"₹{int(p.price * 80):,}",
            "actual_price": f"₹{int((p.list_price or p.price * 1.3) * 80):,}",
            "discount_percentage": f"{rng.randint(5, 60)}%",
            "rating": f"{rng.uniform(2, 5):.1f}",
            "rating_count": f"{rng.randint(10, 90000):,}",
        }
        for p in PRODUCTS
    ]
    profile = infer_profile(records, feed="in")
    assert profile.fields["category"].delimiter == "|"
    assert profile.fields["price"].sources == ("discounted_price",)
    assert profile.fields["list_price"].sources == ("actual_price",)
    product = _apply(profile, records[0])
    assert product["category_path"] == [level.replace(" ", "") for level in PRODUCTS[0].path]
    assert product["price"] == {"value": int(PRODUCTS[0].price * 80), "currency": "INR"}


def test_breadcrumb_objects_and_localised_names() -> None:
    records = [
        {
            "id": i,
            "name": {"en": p.title},
            "breadcrumbs": [{"id": j, "name": level} for j, level in enumerate(p.path)],
            "offer": {"amount": p.price, "currency": "SEK"},
        }
        for i, p in enumerate(PRODUCTS)
    ]
    profile = infer_profile(records, feed="crumbs")
    assert profile.fields["category"].kind == "list"
    assert profile.fields["category"].sources == ("breadcrumbs[].name",)
    _check_paths(profile, records)
    assert _apply(profile, records[0])["price"] == {"value": PRODUCTS[0].price, "currency": "SEK"}


def test_a_price_override_keeps_the_inferred_scale() -> None:
    records = []
    for p in PRODUCTS:
        cents = round(p.price * 100)
        per_kg = f"{cents / p.grams * 10:.2f}".replace(".", ",")
        records.append(
            {"name": p.title, "a": cents, "b": 1, "menge": f"{p.grams}g (1 kg = {per_kg} €)"}
        )
    profile = infer_profile(records, feed="cents", overrides={"price": "a"})
    assert (profile.fields["price"].scale, profile.fields["price"].currency) == (0.01, "EUR")


def test_fragment_rows_do_not_cost_the_title_its_place() -> None:
    """An export that writes each extra variant as a row of its own (the product's key, an option
    and a price; every other field blank) halves the title's fill: the slug key, filled on every
    row, must not become the title."""
    records: list[dict[str, Any]] = []
    blank = {"name": "", "body": "", "maker": "", "category": ""}
    for i, p in enumerate(PRODUCTS):
        slug = "-".join(p.title.casefold().split()[:2]) + f"-{i % 40}"
        records.append(
            {
                "slug": slug,
                "name": p.title,
                "body": f"{p.title} from {p.brand}, for every day use and more.",
                "maker": p.brand,
                "category": " > ".join(p.path),
                "option": "S",
                "price": p.price,
            }
        )
        records.extend(
            {"slug": slug, **blank, "option": size, "price": p.price} for size in ("M", "L", "XL")
        )
    profile = infer_profile(records, feed="fragments")
    assert profile.fields["title"].sources == ("name",)
    heads = [r for r in records if r["name"]]
    assert [_apply(profile, r)["title"] for r in heads] == [p.title for p in PRODUCTS]
    with pytest.raises(NormalizationError, match="fragment row") as caught:
        _apply(profile, records[1])
    assert caught.value.kind == "no_title"
    with pytest.raises(NormalizationError, match=r"title field is empty$"):
        _apply(profile, {**records[0], "name": ""})  # a whole record without its title


def test_a_nesting_that_titles_do_not_predict_loses_to_the_category() -> None:
    """Two logistics fields nest perfectly (each shipping class under one warehouse), as a
    two-level category does; the product's titles predict its category path, not them."""
    rng = random.Random(3)
    warehouses = {
        "Nord": ["Palette", "Paket", "Kuehlware"],
        "Sued": ["Sperrgut", "Brief"],
        "Ost": ["Spedition", "Kleinteil", "Zerbrechlich"],
    }
    records = []
    for p in PRODUCTS:
        warehouse = rng.choice(list(warehouses))
        records.append(
            {
                "c1": p.title,
                "c2": p.price,
                "c3": " > ".join(p.path),
                "c4": warehouse,
                "c5": rng.choice(warehouses[warehouse]),
            }
        )
    profile = infer_profile(records, feed="logistics")
    category = profile.fields["category"]
    assert category.sources == ("c3",)
    assert "titles predict it" in category.evidence
    _check_paths(profile, records)


def test_a_sparse_parent_is_not_a_level() -> None:
    """A field set on a quarter of the records (a tax class) is not the parent of a field set on
    all of them, however well each child value sits under it."""
    rng = random.Random(5)
    records = [
        {
            "name": p.title,
            "price": p.price,
            "tax class": "reduced" if i % 4 == 0 else "",
            "type": rng.choice(["simple", "variable", "bundle", "digital"]),
            "kategorie": p.path[-1],
        }
        for i, p in enumerate(PRODUCTS)
    ]
    profile = infer_profile(records, feed="sparse")
    assert profile.fields["category"].sources == ("kategorie",)


def test_a_field_of_option_lists_is_not_a_brand() -> None:
    """Option values ("Blue, Green, Red" on a product, "Red" on its variant) repeat in titles
    as a brand does; a field that lists several in one value is not one maker's name."""
    colours = ["Red", "Blue", "Green", "Black", "White"]
    records = []
    for i, p in enumerate(PRODUCTS):
        colour = colours[i % len(colours)]
        options = ", ".join(colours[: 2 + i % 3]) if i % 5 == 0 else colour
        records.append({"name": f"{p.title} - {colour}", "price": p.price, "attribute": options})
    profile = infer_profile(records, feed="options")
    assert "brand" not in profile.fields


def _network_feed(quiet_retailer_categories: bool = False) -> list[dict[str, Any]]:
    """An affiliate network's export: three retailers in one file; one of them leaves the
    network's category column blank and writes its own path in another column."""
    records = []
    for i, p in enumerate(PRODUCTS):
        shop = ["Nordhaus", "Casa Verde", "Lumen Store"][i % 3]
        odd = shop == "Casa Verde" and not quiet_retailer_categories
        records.append(
            {
                "merchant": shop,
                "product_name": p.title,
                "search_price": p.price,
                "merchant_category": "" if odd else " > ".join(p.path),
                "category_name": " / ".join(p.path) if odd else "",
                "aw_id": f"x{i}",
            }
        )
    return records


def test_a_retailer_that_fills_its_fields_differently_gets_a_profile_of_its_own() -> None:
    records = _network_feed()
    profiles = infer_profiles(records[:500], feed="network")
    assert len(profiles) == 2
    own = next(p for p in profiles.values() if p.segment)
    other = next(p for p in profiles.values() if not p.segment)
    assert own.segment == ("merchant", ("casa verde",))
    assert own.fields["category"].sources == ("category_name",)
    assert other.fields["category"].sources == ("merchant_category",)
    assert FeedProfile.from_dict(own.to_dict()) == own
    chosen = [choose_profile(r, list(profiles.values())) for r in records]
    assert {
        c.shape for c, r in zip(chosen, records, strict=True) if r["merchant"] == "Casa Verde"
    } == {own.shape}  # type: ignore[union-attr]
    for record, product, profile in zip(records, PRODUCTS, chosen, strict=True):
        assert profile is not None
        assert _apply(profile, record)["category_path"] == product.path
    # a retailer the sample did not see is read by the feed's profile
    stranger = {**records[0], "merchant": "Neuer Laden"}
    assert choose_profile(stranger, list(profiles.values())) is other


def test_retailers_that_fill_their_fields_alike_share_one_profile() -> None:
    """Each retailer's own profile reads it no better: one profile, no segment (a retailer that
    sells one category would lose its category path on its own, and must not get one)."""
    records = _network_feed(quiet_retailer_categories=True)
    for i in range(0, 90, 3):  # a retailer whose sampled records are all in one category
        records[i] = {**records[i], "merchant": "Single", "merchant_category": "Garden > Tools"}
    profiles = infer_profiles(records[:500], feed="network")
    assert list(profiles) == [""] and profiles[""].segment is None
