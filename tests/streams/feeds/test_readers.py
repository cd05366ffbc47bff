"""Feed files of every format → raw records shaped like ``shared/data/feeds/*.jsonl`` rows."""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import json
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from xml.sax.saxutils import escape

import openpyxl
import pytest

from prodcat.streams.feeds.readers import FeedReader, FeedReadError, detect_format, read_records

ROWS = [
    {"id": "1", "title": "Café crème, 250 g", "price": "4,50 €", "image": " "},
    {"id": "2", "title": 'Müsli "Classic"; bio', "price": "3.20", "image": ""},
]


class Pipe(io.RawIOBase):
    """A stream that cannot seek, like standard input fed by a pipe."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        chunk = self._data.read(min(len(buffer), 7919))  # short reads, like a pipe
        buffer[: len(chunk)] = chunk
        return len(chunk)


def write_csv(path: Path, rows: list[dict[str, str]], **options: Any) -> Path:
    encoding = options.pop("encoding", "utf-8")
    with path.open("w", encoding=encoding, newline="") as handle:
        writer = csv.DictWriter(handle, list(rows[0]), **options)
        writer.writeheader()
        writer.writerows(rows)
    return path


def read(source: Any, **options: Any) -> tuple[list[dict[str, Any]], FeedReader]:
    with FeedReader(source, **options) as reader:
        return list(reader), reader


# --- delimited text ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("delimiter", "encoding", "expected_encoding"),
    [
        (",", "utf-8", "utf-8"),
        (",", "utf-8-sig", "utf-8-sig"),
        (";", "cp1252", "cp1252"),
        ("\t", "utf-8", "utf-8"),
        ("|", "utf-16", "utf-16"),
    ],
)
def test_delimited_text_keeps_header_and_raw_strings(
    tmp_path: Path, delimiter: str, encoding: str, expected_encoding: str
) -> None:
    path = write_csv(tmp_path / "feed.txt", ROWS, delimiter=delimiter, encoding=encoding)
    records, reader = read(path)
    assert records == ROWS
    assert (reader.format, reader.delimiter, reader.encoding) == (
        "csv",
        delimiter,
        expected_encoding,
    )


def test_cp1252_csv_decodes_euro_and_accents(tmp_path: Path) -> None:
    path = tmp_path / "feed.csv"
    path.write_bytes("sku;name;price\nA1;Crème brûlée;4,50 €\n".encode("cp1252"))
    assert list(read_records(path)) == [{"sku": "A1", "name": "Crème brûlée", "price": "4,50 €"}]


def test_utf8_file_with_a_cp1252_byte_after_the_sniffed_head(tmp_path: Path) -> None:
    path = tmp_path / "feed.csv"
    body = "".join(f"{i},plain ascii title {i}\n" for i in range(80_000)).encode()
    path.write_bytes(b"id,title\n" + body + b"9,caf\xe9\n")
    records, reader = read(path)
    assert reader.encoding == "cp1252"
    assert records[-1] == {"id": "9", "title": "café"}


def test_csv_quoting_empty_lines_short_and_long_rows_duplicates(tmp_path: Path) -> None:
    path = tmp_path / "feed.csv"
    path.write_text(
        'Product Name,Price,Price,,Notes\n\n"Mug, ""big""\nblue",1.0,2,,\n,,,,\n'
        "Plate,3\nBowl,4,5,,n,extra\n",
        encoding="utf-8",
    )
    assert list(read_records(path)) == [
        {"Product Name": 'Mug, "big"\nblue', "Price": "1.0", "Price_2": "2", "Notes": ""},
        {"Product Name": "Plate", "Price": "3", "Price_2": "", "Notes": ""},
        {"Product Name": "Bowl", "Price": "4", "Price_2": "5", "Notes": "n", "column_6": "extra"},
    ]


def test_csv_header_found_below_banner_lines(tmp_path: Path) -> None:
    path = tmp_path / "feed.csv"
    path.write_text("Product export\nGenerated 2024-05-01\n\nid,name,price\n1,Mug,3\n2,Cup,4\n")
    assert list(read_records(path)) == [
        {"id": "1", "name": "Mug", "price": "3"},
        {"id": "2", "name": "Cup", "price": "4"},
    ]


def test_a_file_without_a_header_row_loses_no_record(tmp_path: Path) -> None:
    """Some networks send data rows only: the first row is a product, not column names."""
    path = tmp_path / "feed.txt"
    lines = [
        "7231430|Weisswein trocken 0,75l|Wein|4.99|https://img.example/7231430.png",
        "7206719|Grauburgunder 0,75l|Wein|5.49|https://img.example/7206719.png",
        "7132463|Rotwein Merlot 0,75l|Wein|6.99|https://img.example/7132463.png",
    ]
    path.write_text("\n".join(lines) + "\n")
    records = list(read_records(path))
    assert len(records) == 3
    assert records[0] == {
        "column_1": "7231430",
        "column_2": "Weisswein trocken 0,75l",
        "column_3": "Wein",
        "column_4": "4.99",
        "column_5": "https://img.example/7231430.png",
    }
    # the same rows under a header: the header names the columns
    path.write_text("sku|name|group|price|image\n" + "\n".join(lines) + "\n")
    records = list(read_records(path))
    assert len(records) == 3
    assert records[0]["sku"] == "7231430"


def test_given_encoding_wins(tmp_path: Path) -> None:
    path = tmp_path / "feed.csv"
    path.write_bytes("id,name\n1,Мир\n".encode("cp1251"))
    records, reader = read(path, encoding="windows-1251")
    assert (records, reader.encoding) == ([{"id": "1", "name": "Мир"}], "cp1251")
    with pytest.raises(FeedReadError, match="unknown encoding 'klingon'"):
        FeedReader(path, encoding="klingon")


def test_large_cells(tmp_path: Path) -> None:
    html = "<p>" + "x" * 300_000 + "</p>"
    path = write_csv(tmp_path / "feed.csv", [{"id": "1", "description": html}])
    assert list(read_records(path)) == [{"id": "1", "description": html}]


def test_format_tsv_forces_tabs(tmp_path: Path) -> None:
    path = tmp_path / "feed.tsv"
    path.write_text("a,b\tc\n1,2\t3\n")
    assert list(read_records(path, format="tsv")) == [{"a,b": "1,2", "c": "3"}]


# --- JSON ----------------------------------------------------------------------------------------

PRODUCTS = [
    {"id": 1, "name": "Montecone", "tags": ["vin", "rött vin"], "price": 159, "x": None},
    {"id": 2, "name": "O/O 100", "basic": {"volume": 0.44}, "prices": [{"salesPrice": 44.9}]},
]


def test_json_array(tmp_path: Path) -> None:
    path = tmp_path / "feed.json"
    path.write_text(json.dumps(PRODUCTS, ensure_ascii=False, indent=2), encoding="utf-8")
    records, reader = read(path)
    assert (records, reader.format, reader.total) == (PRODUCTS, "json", 2)


def test_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "feed.jsonl"
    path.write_text("\n".join(json.dumps(p) for p in PRODUCTS) + "\n\n", encoding="utf-8")
    records, reader = read(path)
    assert (records, reader.format) == (PRODUCTS, "jsonl")


def test_json_object_wrapping_the_products_under_any_key(tmp_path: Path) -> None:
    path = tmp_path / "feed.json"
    wrapper = {"meta": {"count": 2, "links": [{"rel": "next"}]}, "result": {"items": PRODUCTS}}
    path.write_text(json.dumps(wrapper))
    assert list(read_records(path)) == PRODUCTS


def test_one_json_object_with_small_lists_is_one_product(tmp_path: Path) -> None:
    product = {"styleId": 7, "name": "Shirt", "sizes": [{"size": "S"}, {"size": "M"}]}
    path = tmp_path / "feed.json"
    path.write_text(json.dumps(product))
    assert list(read_records(path)) == [product]


def test_json_lines_with_a_long_first_line(tmp_path: Path) -> None:
    first = {"id": 1, "description": "y" * (1 << 21)}
    path = tmp_path / "feed.jsonl"
    path.write_text(json.dumps(first) + "\n" + json.dumps({"id": 2}) + "\n")
    assert list(read_records(path)) == [first, {"id": 2}]


def test_invalid_json_line_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "feed.jsonl"
    path.write_text('{"id": 1}\n{"id": 2}\n{"id": \n')
    with pytest.raises(FeedReadError, match="line 3: not valid JSON"):
        list(read_records(path))


# --- XML -----------------------------------------------------------------------------------------

RSS = """<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0" xmlns:g="http://base.google.com/ns/1.0">
<channel><title>Shop</title><link>https://shop.example</link>
<item>
  <g:id>A0050</g:id>
  <g:title><![CDATA[BLACK <POLY> HITCH]]></g:title>
  <g:product_type>COUPLINGS &amp; HITCHES &gt; OFFROAD</g:product_type>
  <g:condition>Brand new </g:condition>
  <g:gtin></g:gtin>
  <g:image_link>https://img.example/1.png</g:image_link>
  <g:additional_image_link>https://img.example/2.png</g:additional_image_link>
  <g:additional_image_link>https://img.example/3.png</g:additional_image_link>
  <g:shipping><g:country>AU</g:country><g:price>9.95 AUD</g:price></g:shipping>
  <title>plain title</title>
</item>
<item><g:id>D1502</g:id><g:title>PERCH BLOCK :BRASS (5/8x7/8)</g:title></item>
</channel></rss>
"""

RSS_RECORDS = [
    {
        "g:id": "A0050",
        "g:title": "BLACK <POLY> HITCH",
        "g:product_type": "COUPLINGS & HITCHES > OFFROAD",
        "g:condition": "Brand new ",
        "g:gtin": "",
        "g:image_link": "https://img.example/1.png",
        "g:additional_image_link": ["https://img.example/2.png", "https://img.example/3.png"],
        "g:shipping": {"g:country": "AU", "g:price": "9.95 AUD"},
        "title": "plain title",
    },
    {"g:id": "D1502", "g:title": "PERCH BLOCK :BRASS (5/8x7/8)"},
]


def test_google_merchant_rss(tmp_path: Path) -> None:
    path = tmp_path / "feed.xml"
    path.write_bytes(b"\xef\xbb\xbf\n  " + RSS.encode())  # a BOM and blank lines before <?xml
    records, reader = read(path)
    assert (records, reader.format) == (RSS_RECORDS, "xml")


def test_namespace_prefix_as_the_document_writes_it(tmp_path: Path) -> None:
    path = tmp_path / "feed.xml"
    path.write_text(RSS.replace("xmlns:g=", "xmlns:gm=").replace("g:", "gm:"))
    first = next(read_records(path))
    assert first["gm:title"] == "BLACK <POLY> HITCH"
    assert first["gm:shipping"] == {"gm:country": "AU", "gm:price": "9.95 AUD"}


def test_atom_entries_with_attributes(tmp_path: Path) -> None:
    path = tmp_path / "feed.atom"
    path.write_text(
        '<feed xmlns="http://www.w3.org/2005/Atom" xmlns:g="http://base.google.com/ns/1.0">'
        "<title>Store</title><link rel='self' href='https://store.example'/>"
        "<entry><g:id>TV_1</g:id><title type='text'>LG 22&quot; TV</title>"
        "<link href='https://store.example/tv1'/><g:price>159 USD</g:price></entry>"
        "<entry><g:id>TV_2</g:id><title>Sony</title></entry></feed>"
    )
    assert list(read_records(path)) == [
        {
            "g:id": "TV_1",
            "title": {"@type": "text", "#text": 'LG 22" TV'},
            "link": {"@href": "https://store.example/tv1"},
            "g:price": "159 USD",
        },
        {"g:id": "TV_2", "title": "Sony"},
    ]


def test_other_xml_uses_the_most_repeated_element(tmp_path: Path) -> None:
    path = tmp_path / "feed.xml"
    path.write_text(
        "<catalog><info><name>Shop</name></info><products>"
        "<product><name>Mug</name><price>3</price></product>"
        "<product><name>Cup</name><price>4</price></product>"
        "</products></catalog>"
    )
    assert list(read_records(path)) == [
        {"name": "Mug", "price": "3"},
        {"name": "Cup", "price": "4"},
    ]


def _product_xml(i: int, images: int, attributes: int) -> str:
    return (
        f"<product><sku>{i}</sku><name>Mug {i}</name><price>{i}.50</price>"
        f"<brand>Acme</brand><stock>in stock</stock>"
        + "<images>"
        + "".join(
            f"<image><url>https://img.example/{i}/{k}.jpg</url><width>800</width>"
            f"<height>600</height></image>"
            for k in range(images)
        )
        + "</images><attributes>"
        + "".join(
            f"<attribute><name>a{k}</name><value>v{k}</value></attribute>"
            for k in range(attributes)
        )
        + "</attributes></product>"
    )


@pytest.mark.parametrize(("images", "attributes"), [(5, 0), (0, 30), (2, 12)])
def test_other_xml_products_with_lists_of_elements_inside(
    tmp_path: Path, images: int, attributes: int
) -> None:
    """Each product lists more images or attributes than the feed has products: the products
    are still the records, with their lists inside."""
    path = tmp_path / "feed.xml"
    products = "".join(_product_xml(i, images, attributes) for i in range(40))
    path.write_text(f"<catalog><products>{products}</products></catalog>")
    records = list(read_records(path))
    assert [record["sku"] for record in records] == [str(i) for i in range(40)]
    if images:
        assert len(records[0]["images"]["image"]) == images


def test_other_xml_product_with_a_larger_sub_object(tmp_path: Path) -> None:
    """A sub-object with more fields than the product's own (one per product) stays inside."""
    path = tmp_path / "feed.xml"
    shipping = "".join(f"<zone{k}>{k}.95</zone{k}>" for k in range(12))
    products = "".join(
        f"<product><sku>{i}</sku><name>Mug {i}</name><shipping>{shipping}</shipping></product>"
        for i in range(30)
    )
    path.write_text(f"<catalog>{products}</catalog>")
    records = list(read_records(path))
    assert [record["sku"] for record in records] == [str(i) for i in range(30)]
    assert records[0]["shipping"]["zone3"] == "3.95"


def test_other_xml_products_grouped_under_categories(tmp_path: Path) -> None:
    """Products grouped under category elements (with an id, a name and a link of their own)
    are the records, not the groups."""
    path = tmp_path / "feed.xml"
    groups = "".join(
        f"<category><id>{c}</id><title>Group {c}</title><link>https://shop.example/c/{c}</link>"
        + "".join(_product_xml(c * 10 + i, 1, 2) for i in range(10))
        + "</category>"
        for c in range(4)
    )
    path.write_text(f"<catalog>{groups}</catalog>")
    records = list(read_records(path))
    assert len(records) == 40
    assert records[0]["name"] == "Mug 0"


def test_an_empty_rss_feed_has_no_records(tmp_path: Path) -> None:
    path = tmp_path / "feed.xml"
    path.write_text("<rss><channel><title>Shop</title><link>https://x</link></channel></rss>")
    assert list(read_records(path)) == []


def test_entity_expansion_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bomb.xml"
    path.write_text(
        '<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY a "aaaaaaaaaa">'
        '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><rss><channel><item>'
        "<title>&b;</title></item></channel></rss>"
    )
    with pytest.raises(FeedReadError, match="refused for safety"):
        list(read_records(path))


def test_malformed_xml_names_the_position(tmp_path: Path) -> None:
    path = tmp_path / "feed.xml"
    path.write_text("<rss><channel><item><title>A</title></item>\n<item><title>B</item>")
    records = read_records(path)
    assert next(records) == {"title": "A"}
    with pytest.raises(FeedReadError, match="not well-formed XML at line 2"):
        next(records)


# --- xlsx ----------------------------------------------------------------------------------------

PRODUCT_NAME = "Ürün Ad\u0131"  # Turkish, with a dotless i


def test_xlsx_header_below_banner_rows(tmp_path: Path) -> None:
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["Price list — week 23"])
    sheet.append([None, "exported", dt.datetime(2024, 6, 3, 9, 30)])
    sheet.append([])
    sheet.append(["Ana Kategori", "Alt Kategori", PRODUCT_NAME, "Fiyat", "Updated", None])
    sheet.append(["İçecek", "Ayran", "Ayran 200 ml", 7, dt.datetime(2024, 6, 1), None])
    sheet.append(["Meyve ve Sebze", "Meyve", "Karpuz", 24.5, None, "note"])
    sheet.append([None, None, None, None, None, None])
    book.save(tmp_path / "feed.xlsx")

    records, reader = read(tmp_path / "feed.xlsx")
    assert reader.format == "xlsx"
    assert records == [
        {
            "Ana Kategori": "İçecek",
            "Alt Kategori": "Ayran",
            PRODUCT_NAME: "Ayran 200 ml",
            "Fiyat": 7,
            "Updated": "2024-06-01",
        },
        {
            "Ana Kategori": "Meyve ve Sebze",
            "Alt Kategori": "Meyve",
            PRODUCT_NAME: "Karpuz",
            "Fiyat": 24.5,
            "Updated": None,
            "column_6": "note",
        },
    ]
    assert json.loads(json.dumps(records)) == records


# --- standard input, gzip, detection, errors -----------------------------------------------------


def xlsx_bytes(tmp_path: Path) -> bytes:
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["id", "name"])
    sheet.append([1, "Mug"])
    book.save(tmp_path / "x.xlsx")
    return (tmp_path / "x.xlsx").read_bytes()


@pytest.mark.parametrize("kind", ["csv", "jsonl", "rss", "rss.gz", "xlsx", "json"])
def test_standard_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    data, expected = {
        "csv": ("id;name\n1;Mug\n".encode("cp1252"), [{"id": "1", "name": "Mug"}]),
        "jsonl": (b'{"id": 1}\n{"id": 2}\n', [{"id": 1}, {"id": 2}]),
        "rss": (RSS.encode(), RSS_RECORDS),
        "rss.gz": (gzip.compress(RSS.encode()), RSS_RECORDS),
        "xlsx": (xlsx_bytes(tmp_path), [{"id": 1, "name": "Mug"}]),
        "json": (json.dumps({"data": PRODUCTS}).encode(), PRODUCTS),
    }[kind]
    stdin = io.BufferedReader(Pipe(data))
    assert not stdin.seekable()
    monkeypatch.setattr(sys, "stdin", SimpleNamespace(buffer=stdin))
    assert list(read_records("-")) == expected


def test_gzip_file(tmp_path: Path) -> None:
    path = tmp_path / "feed.csv.gz"
    path.write_bytes(gzip.compress(b"id,name\n1,Mug\n"))
    records, reader = read(path)
    assert (records, reader.format) == ([{"id": "1", "name": "Mug"}], "csv")


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"PK\x03\x04rest", "xlsx"),
        (b'\xef\xbb\xbf<?xml version="1.0"?><rss/>', "xml"),
        (b"  <feed xmlns='http://www.w3.org/2005/Atom'/>", "xml"),
        (b'[{"a": 1}]', "json"),
        (b'{\n  "products": []\n}', "json"),
        (b'{"a": 1}', "json"),
        (b'{"a": 1}\n{"a": 2}\n', "jsonl"),
        (b"id,name\n1,x\n", "csv"),
        ("id\tname\n1\tx\n".encode("utf-16"), "csv"),
    ],
)
def test_detect_format(head: bytes, expected: str) -> None:
    assert detect_format(head) == expected


def test_detection_ignores_the_extension(tmp_path: Path) -> None:
    path = tmp_path / "feed.csv"
    path.write_text(json.dumps(PRODUCTS))
    assert list(read_records(path)) == PRODUCTS


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty"),
        (b"<!DOCTYPE html><html><body>Not found</body></html>", "HTML page"),
        (bytes(range(256)) * 8, "binary content"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(100), "legacy .xls"),
        (b"PK\x03\x04" + bytes(100), "not an xlsx workbook"),
        (b"[1, 2]", "array of int"),
        (b'{"a": [1, 2', "not valid JSON at line 1"),
    ],
)
def test_unreadable_content_says_why(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "feed"
    path.write_bytes(content)
    with pytest.raises(FeedReadError, match=message):
        list(read_records(path))


def test_missing_file_directory_and_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(FeedReadError, match="no such file"):
        FeedReader(tmp_path / "missing.csv")
    with pytest.raises(FeedReadError, match="is a directory"):
        FeedReader(tmp_path)
    (tmp_path / "feed.csv").write_text("a\n1\n")
    with pytest.raises(FeedReadError, match="unknown format 'parquet'"):
        FeedReader(tmp_path / "feed.csv", format="parquet")


# --- the development feeds, written back in their original format --------------------------------


def dev_feed(data_dir: Path, name: str) -> list[dict[str, Any]]:
    path = data_dir / "feeds" / f"{name}.jsonl"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def test_development_feeds_round_trip(data_dir: Path, tmp_path: Path) -> None:
    continente = dev_feed(data_dir, "continente_pt")
    write_csv(tmp_path / "continente.csv", continente)
    assert list(read_records(tmp_path / "continente.csv")) == continente

    trailer = dev_feed(data_dir, "trailerparts_au_gmc")
    items = "".join(
        "<item>" + "".join(f"<{k}>{escape(v)}</{k}>" for k, v in row.items()) + "</item>\n"
        for row in trailer
    )
    (tmp_path / "trailer.xml").write_bytes(
        b"\xef\xbb\xbf"
        + f'<rss xmlns:g="http://base.google.com/ns/1.0"><channel>{items}</channel></rss>'.encode()
    )
    assert list(read_records(tmp_path / "trailer.xml")) == trailer

    market = dev_feed(data_dir, "marketfiyati_tr")[:2000]
    book = openpyxl.Workbook(write_only=True)
    sheet = book.create_sheet()
    sheet.append(list(market[0]))
    for row in market:
        sheet.append(list(row.values()))
    book.save(tmp_path / "market.xlsx")
    assert list(read_records(tmp_path / "market.xlsx")) == market

    vinmonopolet = dev_feed(data_dir, "vinmonopolet_no")
    (tmp_path / "vinmonopolet.json").write_text(json.dumps(vinmonopolet, ensure_ascii=False))
    assert list(read_records(tmp_path / "vinmonopolet.json")) == vinmonopolet
