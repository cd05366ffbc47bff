"""Read product feed files of any common format into raw records, one dict per product.

The format is found from the content, not the file name (:func:`detect_format`); gzip is unpacked
on the fly. Records have the shape of the development feeds (``shared/data/feeds/README.md``):

* CSV / TSV / ``;`` / ``|``: one dict per data row keyed by the header exactly as written, every value
  the raw string (a row shorter than the header gets ``""``). Delimiter and encoding are sniffed
  (BOM, UTF-8, UTF-16, else cp1252 / latin-1). A file without a header row (its first row has
  numbers or links where the rows below have them) keys its rows ``column_1``, ``column_2``, ...
* JSON lines, a JSON array of objects, or an object wrapping the products: each object as stored.
* RSS 2.0 / Atom / Google Merchant XML: one dict per ``<item>`` / ``<entry>`` (or, in other XML, per
  product element, :func:`_record_path`: not the images or attributes it lists, nor a group
  around it), keyed by tags as written (``g:title``); the text with entities
  and CDATA decoded, ``""`` when empty, a list for a repeated tag, a dict for an element with children.
  Attributes, which the feeds above do not use, become ``"@name"`` keys, the text then ``"#text"``.
* xlsx: one dict per row below the header row, found under any banner rows; cell values as openpyxl
  gives them, dates and times as ISO strings.

Columns without a header cell, or beyond the header, appear as ``column_<n>`` (1-based) where they
hold a value; a repeated header name gets ``_2``, ``_3``... Entirely empty rows are skipped.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import datetime as dt
import gzip
import io
import json
import re
import shutil
import sys
import tempfile
import warnings
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from itertools import chain, islice
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, BinaryIO, cast
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import iterparse

from prodcat.streams.exceptions import StreamsError

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

__all__ = ["FORMATS", "FeedReadError", "FeedReader", "detect_format", "read_records"]

FORMATS = ("csv", "tsv", "json", "jsonl", "xml", "xlsx")
_ALIASES = {"ndjson": "jsonl", "rss": "xml", "atom": "xml", "excel": "xlsx", "txt": "csv"}
_HEAD_BYTES = 1 << 20  # what detection and delimiter sniffing look at
_HEADER_SCAN = 30  # non-empty rows searched for the header row
_DATA_CELL = re.compile(r"^(?:[+-]?\d+(?:[.,]\d+)*|(?:https?|ftp)://\S+)$")
_DELIMITERS = (",", ";", "\t", "|")
_RECORD_TAGS = frozenset({"item", "entry"})
_FEED_ROOTS = frozenset({"rss", "feed", "RDF"})
_XML_NS = "http://www.w3.org/XML/1998/namespace"
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)

Source = Path | str | BinaryIO


class FeedReadError(StreamsError):
    """A feed file is missing, unreadable, or not in a format prodcat reads; the message says why."""


def read_records(
    source: Source, *, format: str | None = None, encoding: str | None = None
) -> Iterator[dict[str, Any]]:
    """The records of a feed file (``"-"``: standard input), in file order."""
    with FeedReader(source, format=format, encoding=encoding) as reader:
        yield from reader


def detect_format(head: bytes, encoding: str | None = None) -> str:
    """The format (one of :data:`FORMATS` but ``tsv``) of content that starts with ``head``."""
    if head.startswith(b"PK\x03\x04"):
        return "xlsx"
    if head.startswith(b"\xd0\xcf\x11\xe0"):
        raise FeedReadError("a legacy .xls workbook: save it as .xlsx or CSV and publish that")
    text = _decode_head(head, encoding or _sniff_encoding(head)).lstrip("\ufeff \t\r\n")
    if not text:
        raise FeedReadError("the file is empty")
    controls = sum(1 for c in text[:4096] if c < " " and c not in "\t\r\n")
    if controls > len(text[:4096]) // 100:
        raise FeedReadError(
            f"binary content, not a feed: prodcat reads {', '.join(FORMATS)} (and gzip of those)"
        )
    if text[0] == "<":
        if text[:15].lower().startswith(("<!doctype html", "<html")):
            raise FeedReadError("an HTML page, not a feed: download the feed file itself")
        return "xml"
    if text[0] == "[":
        return "json"
    if text[0] == "{":
        lines = [line for line in text.splitlines()[:3] if line.strip()]
        if len(lines) >= 2 and lines[1].lstrip().startswith("{") and _is_object(lines[0]):
            return "jsonl"
        return "json"  # one object (a product or a wrapper); JSON lines are recognised on parsing
    return "csv"


class FeedReader:
    """An open feed file: its ``format``, ``encoding``, ``delimiter``, and its records (iterate
    once). ``total`` is the record count where known without reading them all (JSON; for xlsx the
    sheet's rows less one, an upper bound). Opening checks the file and its format, so most errors
    surface before anything is published."""

    def __init__(
        self, source: Source, *, format: str | None = None, encoding: str | None = None
    ) -> None:
        self._stack = contextlib.ExitStack()
        self.name = "<stream>"
        self.format = ""
        self.encoding: str | None = None
        self.delimiter: str | None = None
        self.total: int | None = None
        self._records: Callable[[], Iterator[dict[str, Any]]]
        try:
            self._open(source, format, encoding)
        except BaseException:
            self._stack.close()
            raise

    def __iter__(self) -> Iterator[dict[str, Any]]:
        try:
            yield from self._records()
        except UnicodeDecodeError as exc:
            raise FeedReadError(
                f"{self.name}: not valid {self.encoding} text ({exc.reason}): give its encoding, "
                "e.g. --encoding cp1252"
            ) from exc
        except csv.Error as exc:
            raise FeedReadError(f"{self.name}: unreadable CSV: {exc}") from exc

    def close(self) -> None:
        self._stack.close()

    def __enter__(self) -> FeedReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _open(self, source: Source, format: str | None, encoding: str | None) -> None:
        stream, self.name = self._open_binary(source)
        seekable = stream.seekable()
        head = _peek(stream, seekable)
        if head.startswith(b"\x1f\x8b"):  # gzip: read what it holds
            unpacked = gzip.GzipFile(fileobj=_rewound(stream, head, seekable))
            stream = cast(BinaryIO, self._stack.enter_context(unpacked))
            seekable = False
            head = _peek(stream, seekable)
        if encoding is not None:
            try:
                encoding = codecs.lookup(encoding).name
            except LookupError as exc:
                raise FeedReadError(f"unknown encoding {encoding!r}") from exc
        if format is not None:
            format = _ALIASES.get(format.lower(), format.lower())
            if format not in FORMATS:
                raise FeedReadError(f"unknown format {format!r}: use one of {', '.join(FORMATS)}")
        self.format = format or detect_format(head, encoding)
        if self.format == "xlsx":
            self.encoding = None
            self._open_xlsx(_seekable(stream, head, seekable, self._stack))
            return
        self.encoding = text_encoding = encoding or _sniff_encoding(head)
        if encoding is None and text_encoding == "utf-8" and seekable and len(head) == _HEAD_BYTES:
            self.encoding = text_encoding = _whole_file_encoding(stream)
        if self.format == "xml":
            skip = _leading_blank(head) if text_encoding.startswith("utf-8") else 0
            xml = _seekable(stream, head, seekable, self._stack)
            start = xml.tell() + skip
            self._records = lambda: _xml_records(xml, start, self.name)
        elif self.format == "json":
            data = _rewound(stream, head, seekable).read().decode(text_encoding)
            records = _json_records(data, self.name)
            self.total = len(records) if isinstance(records, list) else None
            self._records = lambda: iter(records)
        else:
            text = io.TextIOWrapper(
                _rewound(stream, head, seekable), encoding=text_encoding, newline=""
            )
            if self.format == "jsonl":
                self._records = lambda: _jsonl_records(text, self.name)
            else:
                sample = _decode_head(head, text_encoding)
                self.delimiter = "\t" if self.format == "tsv" else _sniff_delimiter(sample)
                self._records = lambda: _csv_records(text, self.delimiter or ",")

    def _open_binary(self, source: Source) -> tuple[BinaryIO, str]:
        if not isinstance(source, str | Path):
            return source, str(getattr(source, "name", "<stream>"))
        if str(source) == "-":
            return sys.stdin.buffer, "<stdin>"
        path = Path(source)
        try:
            return self._stack.enter_context(path.open("rb")), str(path)
        except FileNotFoundError as exc:
            raise FeedReadError(f"{path}: no such file") from exc
        except IsADirectoryError as exc:
            raise FeedReadError(f"{path} is a directory: give a feed file") from exc
        except OSError as exc:
            raise FeedReadError(f"cannot read {path}: {exc.strerror or exc}") from exc

    def _open_xlsx(self, stream: BinaryIO) -> None:
        from openpyxl import load_workbook
        from openpyxl.utils.exceptions import InvalidFileException

        try:
            with warnings.catch_warnings():  # styles and extensions openpyxl does not read
                warnings.simplefilter("ignore", UserWarning)
                book = load_workbook(stream, read_only=True, data_only=True)
        except (zipfile.BadZipFile, InvalidFileException, KeyError, OSError) as exc:
            raise FeedReadError(f"{self.name}: not an xlsx workbook ({exc})") from exc
        self._stack.callback(book.close)
        sheet: Any = book.active if hasattr(book.active, "iter_rows") else None
        sheet = sheet or next((s for s in book.worksheets if hasattr(s, "iter_rows")), None)
        if sheet is None:
            raise FeedReadError(f"{self.name}: the workbook has no worksheet")
        rows = getattr(sheet, "max_row", None)
        self.total = max(rows - 1, 0) if rows else None  # an estimate: banner rows are counted
        if hasattr(sheet, "reset_dimensions"):  # the stored size may be wrong: read every cell
            sheet.reset_dimensions()
        cells = sheet.iter_rows(values_only=True)
        self._records = lambda: _table_records(
            ([_cell_value(v) for v in row] for row in cells), missing=None
        )


# --- bytes, encodings ---------------------------------------------------------------------------


class _Rewound(io.RawIOBase):
    """A stream that cannot seek, whose first bytes were already read: those, then the rest."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self._head = memoryview(head)
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        if self._head:
            n = min(len(view), len(self._head))
            view[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._rest.read(len(view))
        view[: len(data)] = data
        return len(data)


def _peek(stream: BinaryIO, seekable: bool) -> bytes:
    if seekable:
        start = stream.tell()
        head = stream.read(_HEAD_BYTES)
        stream.seek(start)
        return head
    chunks: list[bytes] = []
    size = 0
    while size < _HEAD_BYTES and (chunk := stream.read(_HEAD_BYTES - size)):
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _rewound(stream: BinaryIO, head: bytes, seekable: bool = False, skip: int = 0) -> BinaryIO:
    """``stream`` from byte ``skip`` of its content (whose first bytes, ``head``, were peeked)."""
    if seekable:
        stream.seek(skip, io.SEEK_CUR)
        return stream
    return io.BufferedReader(_Rewound(head[skip:], stream), buffer_size=1 << 16)


def _seekable(
    stream: BinaryIO, head: bytes, seekable: bool, stack: contextlib.ExitStack
) -> BinaryIO:
    """A seekable copy of a stream that is not (standard input, gzip): xlsx and XML need one."""
    if seekable:
        return stream
    spool = tempfile.SpooledTemporaryFile(max_size=64 << 20)  # noqa: SIM115 (the stack closes it)
    stack.enter_context(spool)
    shutil.copyfileobj(_rewound(stream, head), spool)
    spool.seek(0)
    return cast(BinaryIO, spool)


def _sniff_encoding(head: bytes) -> str:
    for bom, name in _BOMS:
        if head.startswith(bom):
            return name
    sample = head[:4000]
    if len(sample) >= 4 and sample.count(0) > len(sample) // 4:  # UTF-16 without a BOM
        return "utf-16-le" if sample[1::2].count(0) > sample[::2].count(0) else "utf-16-be"
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=len(head) < _HEAD_BYTES)
        return "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        head.decode("cp1252")
        return "cp1252"
    except UnicodeDecodeError:
        return "latin-1"  # decodes any byte


def _whole_file_encoding(stream: BinaryIO) -> str:
    """``utf-8`` when all of a seekable file is valid UTF-8, else the single-byte fallback."""
    start = stream.tell()
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        while chunk := stream.read(1 << 20):
            decoder.decode(chunk)
        decoder.decode(b"", final=True)
        return "utf-8"
    except UnicodeDecodeError:
        stream.seek(start)
        return "cp1252" if _decodes_cp1252(stream) else "latin-1"
    finally:
        stream.seek(start)


def _decodes_cp1252(stream: BinaryIO) -> bool:
    try:
        while chunk := stream.read(1 << 20):
            chunk.decode("cp1252")
        return True
    except UnicodeDecodeError:
        return False


def _decode_head(head: bytes, encoding: str) -> str:
    try:
        return codecs.getincrementaldecoder(encoding)(errors="replace").decode(head)
    except LookupError as exc:
        raise FeedReadError(f"unknown encoding {encoding!r}") from exc


def _leading_blank(head: bytes) -> int:
    """Bytes before an XML document's first ``<`` (a BOM, blank lines): expat rejects them."""
    start = len(codecs.BOM_UTF8) if head.startswith(codecs.BOM_UTF8) else 0
    return len(head) - len(head[start:].lstrip(b" \t\r\n")) if head[start:][:1].isspace() else 0


# --- delimited text and spreadsheets -------------------------------------------------------------


def _sniff_delimiter(sample: str) -> str:
    """The candidate that splits the sample's rows into the same number (≥ 2) of fields most often."""
    if "\n" in sample.rstrip("\r\n"):
        sample = sample[: sample.rstrip("\r\n").rfind("\n")]  # the last line may be cut short
    best, best_score = ",", (0, 0)
    for delimiter in _DELIMITERS:
        rows = [r for r in csv.reader(io.StringIO(sample), delimiter=delimiter) if any(r)][:200]
        widths = Counter(len(r) for r in rows)
        if not widths:
            continue
        width, count = max(widths.items(), key=lambda item: (item[1], item[0]))
        score = (round(20 * count / len(rows)), width) if width > 1 else (0, 0)
        if score > best_score:
            best, best_score = delimiter, score
    return best


def _csv_records(text: IO[str], delimiter: str) -> Iterator[dict[str, Any]]:
    # Feeds put whole HTML pages in a cell; the default limit (128 KiB) is for typos, not data.
    csv.field_size_limit(max(csv.field_size_limit(), 64 << 20))
    yield from _table_records(csv.reader(text, delimiter=delimiter), missing="")


def _table_records(rows: Iterator[Sequence[Any]], missing: Any) -> Iterator[dict[str, Any]]:
    first = list(islice((r for r in rows if not _blank_row(r)), _HEADER_SCAN))
    if not first:
        return
    at = _header_index(first)
    # A file without a header row: every row is a record, its columns column_1, column_2, ...
    keys = _column_keys(first[at]) if at >= 0 else []
    for row in chain(first[at + 1 :], rows):
        if _blank_row(row):
            continue
        record: dict[str, Any] = {}
        for j, key in enumerate(keys):
            value = row[j] if j < len(row) else missing
            if key is not None:
                record[key] = value
            elif not _blank(value):
                record[f"column_{j + 1}"] = value
        for j in range(len(keys), len(row)):
            if not _blank(row[j]):
                record[f"column_{j + 1}"] = row[j]
        yield record


def _header_index(rows: Sequence[Sequence[Any]]) -> int:
    """The first row that reads as column names over most of the width the rows below it fill:
    at least two short cells, mostly text and mostly distinct, and not shaped like the data
    below it. Banner rows above it are skipped; -1 when no row is a header (a file of data
    rows only)."""
    for i, row in enumerate(rows):
        cells = [c for c in row if not _blank(c)]
        texts = [c for c in cells if isinstance(c, str)]
        if (
            len(cells) < 2
            or len(texts) < 0.5 * len(cells)
            or len({str(c) for c in cells}) < 0.5 * len(cells)
            or any(len(t) > 100 for t in texts)
        ):
            continue
        below = Counter(_span(r) for r in rows[i + 1 : i + 11])
        width = max(below.items(), key=lambda item: (item[1], item[0]))[0] if below else 0
        if len(cells) >= 0.5 * width:
            # rows below a data row are data too: the header, if any, was above
            return -1 if _shaped_like_data(row, rows[i + 1 : i + 11]) else i
    return 0


def _shaped_like_data(row: Sequence[Any], below: Sequence[Sequence[Any]]) -> bool:
    """Whether two or more of ``row``'s cells are numbers or links in columns whose cells below
    are numbers or links too: a data row, where a header row names those columns."""
    if not below:
        return False
    alike = 0
    for j, cell in enumerate(row):
        if _blank(cell) or not _DATA_CELL.match(str(cell).strip()):
            continue
        column = [r[j] for r in below if j < len(r) and not _blank(r[j])]
        if column and sum(bool(_DATA_CELL.match(str(c).strip())) for c in column) >= 0.8 * len(
            column
        ):
            alike += 1
    return alike >= 2


def _column_keys(header: Sequence[Any]) -> list[str | None]:
    keys: list[str | None] = []
    seen: Counter[str] = Counter()
    for cell in header:
        if _blank(cell):
            keys.append(None)
            continue
        name = cell if isinstance(cell, str) else str(cell)
        seen[name] += 1
        keys.append(name if seen[name] == 1 else f"{name}_{seen[name]}")
    return keys


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _blank_row(row: Sequence[Any]) -> bool:
    return all(_blank(v) for v in row)


def _span(row: Sequence[Any]) -> int:
    return next((j + 1 for j in range(len(row) - 1, -1, -1) if not _blank(row[j])), 0)


def _cell_value(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.date().isoformat() if value.time() == dt.time() else value.isoformat()
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return str(value)
    return value


# --- JSON ---------------------------------------------------------------------------------------


def _is_object(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def _jsonl_records(lines: Iterator[str] | IO[str], name: str) -> Iterator[dict[str, Any]]:
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError as exc:
            raise FeedReadError(f"{name} line {number}: not valid JSON ({exc})") from exc
        if not isinstance(value, dict):
            raise FeedReadError(
                f"{name} line {number}: a JSON {type(value).__name__}, not a product object"
            )
        yield value


def _json_records(text: str, name: str) -> list[dict[str, Any]] | Iterator[dict[str, Any]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data":  # several documents: JSON lines
            return _jsonl_records(iter(text.splitlines()), name)
        raise FeedReadError(
            f"{name}: not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from exc
    if isinstance(data, list):
        if all(isinstance(v, dict) for v in data):
            return data
        kinds = sorted({type(v).__name__ for v in data if not isinstance(v, dict)})
        raise FeedReadError(f"{name}: a JSON array of {', '.join(kinds)}, not of product objects")
    if not isinstance(data, dict):
        raise FeedReadError(f"{name}: a JSON {type(data).__name__}, not products")
    found = _product_list(data, _leaves(data))
    return found if found is not None else [data]


def _product_list(value: Any, total: int) -> list[dict[str, Any]] | None:
    """The outermost list of objects holding most of the document's values: the products
    a wrapper object carries under whatever key. None: the object is itself one product."""
    if isinstance(value, list):
        if value and all(isinstance(v, dict) for v in value) and 2 * _leaves(value) > total:
            return value
        children: Sequence[Any] = value
    elif isinstance(value, dict):
        children = list(value.values())
    else:
        return None
    for child in children:
        if isinstance(child, list | dict) and 2 * _leaves(child) > total:
            return _product_list(child, total)
    return None


def _leaves(value: Any) -> int:
    if isinstance(value, dict):
        return sum(_leaves(v) for v in value.values())
    if isinstance(value, list):
        return sum(_leaves(v) for v in value)
    return 1


# --- XML ----------------------------------------------------------------------------------------


def _xml_records(stream: BinaryIO, start: int, name: str) -> Iterator[dict[str, Any]]:
    """Records of ``<item>`` / ``<entry>`` elements; in XML with neither, of the repeated element
    that holds the products (:func:`_record_path`; a second pass)."""
    shapes: Counter[tuple[str, ...]] = Counter()
    leaves: Counter[tuple[str, ...]] = Counter()
    found = False
    stream.seek(start)
    is_item = lambda path: _local(path[-1]) in _RECORD_TAGS  # noqa: E731
    for record in _xml_pass(stream, is_item, name, shapes, leaves):
        found = True
        yield record
    if found or not shapes or _local(next(iter(shapes))[0]) in _FEED_ROOTS:
        return  # no records (an empty RSS / Atom feed has no products, not one)
    target = _record_path(shapes, leaves)
    stream.seek(start)
    yield from _xml_pass(stream, lambda path: path == target, name)


def _record_path(
    shapes: Counter[tuple[str, ...]], leaves: Counter[tuple[str, ...]]
) -> tuple[str, ...]:
    """The element path of the products, among the repeated elements with children.

    Each has fields of its own (leaves per instance outside the repeated elements inside it).
    The start is the one with most such fields in all (count x own); then outwards: an element
    around it is the product when it holds at most one of it per instance (a sub-object such as
    a shipping block) or has at least as many fields of its own (a product listing its images
    or attributes); a wrapper with no fields of its own (``<images>``) is passed through; a
    group with fewer fields than its products (a category with an id and a name) is not.
    """
    repeated = {path: count for path, count in shapes.items() if count >= 2} or dict(shapes)

    def own(path: tuple[str, ...]) -> float:
        inner = sum(
            leaves[other]
            for other in repeated
            if len(other) > len(path)
            and other[: len(path)] == path
            and not any(other[:k] in repeated for k in range(len(path) + 1, len(other)))
        )
        return (leaves[path] - inner) / repeated[path]

    best = max(repeated, key=lambda path: (repeated[path] * own(path), -len(path)))
    for depth in range(len(best) - 1, 0, -1):
        outer = best[:depth]
        if outer not in repeated:
            continue
        fields = own(outer)
        if repeated[best] <= repeated[outer] or fields >= own(best):
            best = outer
        elif fields > 0:
            break
    return best


def _xml_pass(
    stream: BinaryIO,
    is_record: Callable[[tuple[str, ...]], bool],
    name: str,
    shapes: Counter[tuple[str, ...]] | None = None,
    leaves: Counter[tuple[str, ...]] | None = None,
) -> Iterator[dict[str, Any]]:
    bindings: list[tuple[str, str]] = []  # (prefix, uri) in scope, innermost last
    open_elements: list[Element] = []
    path: list[str] = []
    has_children: list[bool] = []
    record: Element | None = None
    names: dict[int, tuple[str, dict[str, str]]] = {}  # id(element) -> (tag, attributes) as written
    subtree: list[int] = []  # leaves under each open element
    try:
        for event, item in iterparse(stream, events=("start-ns", "end-ns", "start", "end")):
            if event == "start-ns":
                bindings.append(item)
            elif event == "end-ns":
                bindings.pop()
            elif event == "start":
                tag = _written(item.tag, bindings)
                if has_children:
                    has_children[-1] = True
                open_elements.append(item)
                path.append(tag)
                has_children.append(False)
                subtree.append(0)
                if record is None and is_record(tuple(path)):
                    record = item
                if record is not None:
                    attrs = {"@" + _written(k, bindings): v for k, v in item.attrib.items()}
                    names[id(item)] = (tag, attrs)
            else:
                open_elements.pop()
                shape = tuple(path)
                path.pop()
                under = subtree.pop()
                parent_of_some = has_children.pop()
                if subtree:
                    subtree[-1] += under if parent_of_some else 1
                if parent_of_some and record is None and shapes is not None:
                    shapes[shape] += 1
                    if leaves is not None:
                        leaves[shape] += under
                if record is not None and item is record:
                    value = _element_value(record, names)
                    yield value if isinstance(value, dict) else {"#text": value}
                    record = None
                    names.clear()
                if record is None and open_elements:  # done with it: free the memory
                    open_elements[-1].remove(item)
    except ParseError as exc:
        line, column = exc.position
        raise FeedReadError(f"{name}: not well-formed XML at line {line}, column {column}") from exc
    except DefusedXmlException as exc:
        raise FeedReadError(f"{name}: XML refused for safety ({exc})") from exc


def _element_value(element: Element, names: dict[int, tuple[str, dict[str, str]]]) -> Any:
    attrs = names[id(element)][1]
    text = element.text or ""
    if len(element) == 0 and not attrs:
        return text
    value: dict[str, Any] = dict(attrs)
    for child in element:
        key = names[id(child)][0]
        item = _element_value(child, names)
        if key not in value:
            value[key] = item
        elif isinstance(value[key], list):
            value[key].append(item)
        else:
            value[key] = [value[key], item]
    if text.strip() or (len(element) == 0 and text):
        value["#text"] = text
    return value


def _written(qualified: str, bindings: list[tuple[str, str]]) -> str:
    """``{uri}local`` as the document writes it: ``prefix:local`` (or ``local`` in the default
    namespace), the innermost prefix bound to that URI."""
    if not qualified.startswith("{"):
        return qualified
    uri, _, local = qualified[1:].partition("}")
    if uri == _XML_NS:
        return f"xml:{local}"
    for prefix, bound in reversed(bindings):
        if bound == uri:
            return f"{prefix}:{local}" if prefix else local
    return local


def _local(tag: str) -> str:
    return tag.rpartition(":")[2]
