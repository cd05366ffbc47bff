"""The web UI's local view of its topics: a SQLite file rebuilt from Kafka at every start.

The follower (:mod:`prodcat.serving.web.follower`) applies every record of ``products.normalized``,
``annotation.requests``, ``labels``, ``similarity.judgements``, ``products.predictions``,
``feeds.mappings``, ``taxonomy.events``, ``labels.suspect`` and ``labels.second`` here; pages only
read. Kafka
stays the source of truth: the file is a cache, recreated empty when the process starts. SQLite
keeps memory bounded whatever the topics hold (a queue of tens of thousands of requests, millions
of products), and gives the product-title search an index: a table of (word, product) pairs, so a
query's first word is a range scan of that index and its other words filter the few rows found
(no FTS module: TensorFlow's bundled SQLite, which wins once TensorFlow is loaded, has none).

What the tables hold: the card fields of each product (not the whole record), the newest request
per product, the live label per key (with its encoded value, so an undo can restore it), the
category prefixes seen on products (for subtree filters), the live judgements, each product's
top-1 predicted category and the feed-category mapping decisions (for the Mappings screen), the
taxonomy changes (for the Taxonomy page) and the labels the firewall holds (for the Review queue).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import sqlite3
import threading
import time
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from prodcat.core.ids import KEY_SEPARATOR, path_id
from prodcat.serving.vector_plan import CATEGORY_LEVELS
from prodcat.training.agreement import double_labelled
from prodcat.training.firewall import HELD, SuspectLabel
from prodcat.training.mappings import PROTECTED_SOURCES, Decision

DESCRIPTION_CHARS: Final = 1500
UNCERTAINTY: Final = "uncertainty"  # the queue filter meaning "every strategy but random"

_SCHEMA = """
CREATE TABLE products (product_id TEXT PRIMARY KEY, title TEXT NOT NULL, brand TEXT,
    price REAL, currency TEXT, description BLOB, image_url TEXT NOT NULL, feed TEXT,
    category_path TEXT NOT NULL, retailer TEXT, product_url TEXT, search_text TEXT NOT NULL);
CREATE TABLE title_words (word TEXT NOT NULL, product_id TEXT NOT NULL,
    PRIMARY KEY (word, product_id)) WITHOUT ROWID;
CREATE TABLE categories (category_id TEXT PRIMARY KEY, path TEXT NOT NULL, depth INTEGER NOT NULL);
CREATE TABLE requests (product_id TEXT PRIMARY KEY, strategy TEXT NOT NULL, score REAL NOT NULL,
    suggestions TEXT NOT NULL, model_name TEXT, model_version INTEGER, requested_at INTEGER,
    open INTEGER NOT NULL, decision TEXT, partial_path TEXT NOT NULL DEFAULT '[]',
    double INTEGER NOT NULL DEFAULT 0);
CREATE INDEX requests_open_order ON requests (open, requested_at, product_id);
CREATE INDEX requests_open_strategy ON requests (open, strategy);
CREATE INDEX requests_double ON requests (double) WHERE double = 1;
CREATE TABLE labels (key TEXT PRIMARY KEY, product_id TEXT NOT NULL, objective TEXT NOT NULL,
    category_id TEXT, source TEXT, annotator TEXT, strategy TEXT, time_taken_ms INTEGER,
    labelled_at INTEGER NOT NULL, value BLOB NOT NULL);
CREATE INDEX labels_time ON labels (source, labelled_at);
CREATE INDEX products_feed_path ON products (feed, category_path);
CREATE TABLE predicted (product_id TEXT PRIMARY KEY, category_id TEXT NOT NULL,
    path TEXT NOT NULL, version INTEGER NOT NULL DEFAULT 0, prev_category_id TEXT,
    prev_version INTEGER, probability REAL NOT NULL DEFAULT 0);
CREATE TABLE version_pairs (prev_version INTEGER NOT NULL, version INTEGER NOT NULL,
    prev_category_id TEXT NOT NULL, category_id TEXT NOT NULL, n INTEGER NOT NULL,
    PRIMARY KEY (prev_version, version, prev_category_id, category_id));
CREATE TABLE mappings (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE taxonomy_events (change_id TEXT PRIMARY KEY, at INTEGER NOT NULL, value BLOB NOT NULL);
CREATE TABLE suspects (product_id TEXT PRIMARY KEY, status TEXT NOT NULL, source TEXT NOT NULL,
    annotator TEXT, flagged_at INTEGER NOT NULL, value BLOB NOT NULL);
CREATE INDEX suspects_held ON suspects (status, flagged_at, product_id);
CREATE TABLE second_opinions (product_id TEXT PRIMARY KEY, annotator TEXT NOT NULL,
    category_id TEXT NOT NULL, first_annotator TEXT NOT NULL, first_category_id TEXT NOT NULL,
    labelled_at INTEGER NOT NULL, value BLOB NOT NULL);
CREATE TABLE revoked_sessions (session_id TEXT PRIMARY KEY, expires_at REAL NOT NULL);
CREATE TABLE judgements (key TEXT PRIMARY KEY, query TEXT NOT NULL, category_id TEXT,
    model_version INTEGER, neighbour TEXT NOT NULL, rank INTEGER NOT NULL, score REAL NOT NULL,
    relevant INTEGER NOT NULL, annotator TEXT NOT NULL, judged_at INTEGER NOT NULL);
"""

#: Where a kept view got to (see TopicView): the identity it was written for, when it was last
#: saved, and the next offset of every partition it has read.
_CHECKPOINT_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE offsets (topic TEXT NOT NULL, partition INTEGER NOT NULL, next INTEGER NOT NULL,
    PRIMARY KEY (topic, partition));
"""


def _remove(path: Path) -> None:
    """The file and its write-ahead log."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


#: A request is open while its product has no exclusive label. The flag is kept by
#: apply_request and apply_label, so queue reads never look past answered requests.
_OPEN = "r.open = 1"
_ANSWERING = "/exclusive"  # the label key suffix (training.labels.label_key) that answers a request
#: The label ``l`` is the exclusive label of product ``p`` from a person or an import (a mapping
#: never overwrites one).
_PROTECTED_LABEL = (
    f"l.key = p.product_id || '{_ANSWERING}' AND l.source IN ("
    + ",".join(f"'{source}'" for source in sorted(PROTECTED_SOURCES))
    + ")"
)


@dataclass(frozen=True)
class QueuedRequest:
    """A request still waiting for an exclusive label."""

    product_id: str
    strategy: str
    score: float
    suggestions: list[dict[str, Any]]
    model_name: str | None
    model_version: int | None
    requested_at: int
    decision: str | None = None
    partial_path: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class LiveLabel:
    key: str
    product_id: str
    annotator: str | None
    labelled_at: int
    value: bytes


def judgement_key(judgement: Mapping[str, Any]) -> str:
    """``<query>/<category or *>/<embedder version or ->/<neighbour>/<annotator>``: one live
    verdict per annotator, neighbour and query setting (a re-judgement replaces it)."""
    query = judgement["query_product_id"] or f"sha256:{judgement['query_image_sha256']}"
    version = judgement["model_version"]
    return "/".join(
        (
            query,
            judgement["category_id"] or "*",
            "-" if version is None else str(version),
            judgement["neighbour_product_id"],
            judgement["annotator"],
        )
    )


def _strategy_clause(strategy: str | None) -> tuple[str, tuple[str, ...]]:
    if not strategy:
        return "", ()
    if strategy == UNCERTAINTY:
        return " AND r.strategy != 'random'", ()
    return " AND r.strategy = ?", (strategy,)


def words(text: str, limit: int = 40) -> list[str]:
    """The distinct lower-case words of ``text`` in order (at most ``limit``)."""
    return list(dict.fromkeys(re.findall(r"\w+", text.casefold())))[:limit]


def _like(word: str) -> str:
    return "%" + word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


class TopicView:
    """The SQLite view; every method is thread-safe (one connection behind a lock).

    With ``keep`` the file outlives the process: it holds, in the same transactions as the
    records, the next offset of every partition read (:meth:`offsets`, :meth:`save_offsets`), so
    the next start catches up from there instead of from the beginning. A kept file is reused
    only when it was written for the same ``identity`` (the brokers and topics it follows), by
    this schema, at most ``max_age_s`` ago (a compacted topic drops tombstones after its
    ``delete.retention.ms``, one day by default: an older view could keep deleted records), and
    opens cleanly; otherwise it is rebuilt from the beginning. ``reused`` says which happened."""

    def __init__(
        self,
        path: Path | str = ":memory:",
        *,
        double_share: float = 0.0,
        keep: bool = False,
        identity: str = "",
        max_age_s: float = 20 * 3600,
    ) -> None:
        """``double_share``: the share of requested products that two annotators label
        (:func:`~prodcat.training.agreement.double_labelled`)."""
        self.double_share = double_share
        self.path = path
        self.keep = keep and str(path) != ":memory:"
        self._identity = hashlib.sha256(f"{_SCHEMA}\n{identity}".encode()).hexdigest()
        self.reused = False
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            if self.keep:
                self.reused = self._reusable(Path(path), max_age_s)
            if not self.reused:
                _remove(Path(path))
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        if self.keep:  # survives a crash: the checkpoint and the records commit together
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = NORMAL")
        else:
            self._db.execute("PRAGMA journal_mode = OFF")
            self._db.execute("PRAGMA synchronous = OFF")
        if not self.reused:
            self._db.executescript(_SCHEMA + _CHECKPOINT_SCHEMA)
            self._db.execute(
                "INSERT INTO meta VALUES ('identity', ?), ('saved_at', '0')", (self._identity,)
            )
        self._lock = threading.RLock()

    def _reusable(self, path: Path, max_age_s: float) -> bool:
        """Whether a kept file may be reused (see the class)."""
        if not path.is_file():
            return False
        try:
            with contextlib.closing(sqlite3.connect(str(path))) as db:
                if db.execute("PRAGMA quick_check").fetchone()[0] != "ok":
                    return False
                meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.Error:
            return False
        age_s = time.time() - int(meta.get("saved_at", "0")) / 1000
        return meta.get("identity") == self._identity and age_s <= max_age_s

    def offsets(self) -> dict[tuple[str, int], int]:
        """The next offset to read of each partition the view has read (a kept view)."""
        rows = self._rows("SELECT topic, partition, next FROM offsets")
        return {(row["topic"], row["partition"]): row["next"] for row in rows}

    def save_offsets(self, offsets: Mapping[tuple[str, int], int]) -> None:
        """Record where each partition's reading got to; call it inside the :meth:`batch` that
        applied the records, so both commit together."""
        with self._lock:
            self._db.executemany(
                "INSERT OR REPLACE INTO offsets VALUES (?,?,?)",
                [(topic, partition, offset) for (topic, partition), offset in offsets.items()],
            )
            self._db.execute(
                "UPDATE meta SET value = ? WHERE key = 'saved_at'", (str(int(time.time() * 1000)),)
            )

    def size_bytes(self) -> int:
        """The view's file size (0 in memory)."""
        if str(self.path) == ":memory:":
            return 0
        return sum(
            f.stat().st_size
            for f in (Path(f"{self.path}{suffix}") for suffix in ("", "-wal"))
            if f.is_file()
        )

    def close(self) -> None:
        with self._lock:
            self._db.close()
        if str(self.path) != ":memory:" and not self.keep:
            _remove(Path(self.path))

    def batch(self) -> _Batch:
        """A transaction for many applies (the follower applies each poll in one)."""
        return _Batch(self)

    def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            cursor = self._db.execute(sql, params)
            cursor.row_factory = sqlite3.Row
            return cursor.fetchall()

    def _rows_by_id(self, select: str, product_ids: Sequence[str]) -> list[sqlite3.Row]:
        """The rows of ``select`` (``SELECT ... FROM table``) whose ``product_id`` is one of
        ``product_ids``, asked 500 at a time (SQLite's bound on parameters)."""
        out: list[sqlite3.Row] = []
        for start in range(0, len(product_ids), 500):
            chunk = tuple(product_ids[start : start + 500])
            marks = ",".join("?" * len(chunk))
            out += self._rows(f"{select} WHERE product_id IN ({marks})", chunk)
        return out

    # -- applying records -----------------------------------------------------------------------

    def _forget_words(self, pid: str) -> None:
        """Remove the product's title words from the word index (found from its stored title:
        no second index by product is kept)."""
        rows = self._rows("SELECT title, brand FROM products WHERE product_id = ?", (pid,))
        if rows:
            old = words(f"{rows[0]['title']} {rows[0]['brand'] or ''}")
            self._db.executemany(
                "DELETE FROM title_words WHERE word = ? AND product_id = ?", [(w, pid) for w in old]
            )

    def apply_product(self, key: bytes | None, product: Mapping[str, Any] | None) -> None:
        with self._lock:
            if product is None:
                if key is not None:
                    pid = key.decode("utf-8", "replace")
                    self._forget_words(pid)
                    self._db.execute("DELETE FROM products WHERE product_id = ?", (pid,))
                return
            pid = product["product_id"]
            price = product.get("price") or {}
            path = list(product.get("category_path") or [])
            text = f"{product['title']} {product.get('brand') or ''}"
            description = (product.get("description") or "")[:DESCRIPTION_CHARS]
            self._forget_words(pid)
            self._db.execute(
                "INSERT OR REPLACE INTO products VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    pid,
                    product["title"],
                    product.get("brand"),
                    price.get("value"),
                    price.get("currency"),
                    zlib.compress(description.encode(), 6) if description else None,
                    next(iter(product.get("image_urls") or ()), ""),
                    product.get("feed"),
                    json.dumps(path, ensure_ascii=False),
                    product.get("retailer"),
                    product.get("product_url"),
                    " ".join(words(text, 200)),
                ),
            )
            self._db.executemany(
                "INSERT OR IGNORE INTO title_words VALUES (?,?)", [(w, pid) for w in words(text)]
            )
            prefixes = [
                (path_id(path[:depth]), " > ".join(path[:depth]), depth)
                for depth in range(1, min(len(path), CATEGORY_LEVELS) + 1)
            ]
            self._db.executemany("INSERT OR IGNORE INTO categories VALUES (?,?,?)", prefixes)

    def apply_request(self, request: Mapping[str, Any] | None) -> None:
        if request is None:
            return
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO requests VALUES (?,?,?,?,?,?,?,"
                "NOT EXISTS (SELECT 1 FROM labels WHERE key = ?),?,?,?)",
                (
                    request["product_id"],
                    request["strategy"],
                    float(request["score"]),
                    json.dumps(request.get("suggestions") or [], ensure_ascii=False),
                    request.get("model_name"),
                    request.get("model_version"),
                    request.get("requested_at"),
                    request["product_id"] + _ANSWERING,
                    request.get("decision"),
                    json.dumps(request.get("partial_path") or [], ensure_ascii=False),
                    double_labelled(request["product_id"], self.double_share),
                ),
            )

    def apply_label(self, key: bytes, label: Mapping[str, Any] | None, value: bytes | None) -> None:
        """A record of ``labels`` (``label`` None: a tombstone of ``key``)."""
        text = key.decode("utf-8", "replace")
        answering = text.endswith(_ANSWERING)
        with self._lock:
            if label is None or value is None:
                self._db.execute("DELETE FROM labels WHERE key = ?", (text,))
                if answering:  # retracted: the product is back in the queue
                    self._db.execute(
                        "UPDATE requests SET open = 1 WHERE product_id = ?",
                        (text.removesuffix(_ANSWERING),),
                    )
                return
            if answering:
                self._db.execute(
                    "UPDATE requests SET open = 0 WHERE product_id = ?", (label["product_id"],)
                )
            ids = label.get("category_ids") or []
            self._db.execute(
                "INSERT OR REPLACE INTO labels VALUES (?,?,?,?,?,?,?,?,?,?)",
                (
                    text,
                    label["product_id"],
                    label["objective"],
                    ids[0] if ids else None,
                    label.get("source"),
                    label.get("annotator"),
                    label.get("strategy"),
                    label.get("time_taken_ms"),
                    int(label["labelled_at"]),
                    value,
                ),
            )

    def apply_judgement(self, key: bytes, judgement: Mapping[str, Any] | None) -> None:
        text = key.decode("utf-8", "replace")
        with self._lock:
            if judgement is None:
                self._db.execute("DELETE FROM judgements WHERE key = ?", (text,))
                return
            query = judgement["query_product_id"] or f"sha256:{judgement['query_image_sha256']}"
            self._db.execute(
                "INSERT OR REPLACE INTO judgements VALUES (?,?,?,?,?,?,?,?,?,?)",
                (
                    text,
                    query,
                    judgement.get("category_id"),
                    judgement.get("model_version"),
                    judgement["neighbour_product_id"],
                    int(judgement["rank"]),
                    float(judgement["score"]),
                    int(bool(judgement["relevant"])),
                    judgement["annotator"],
                    int(judgement["judged_at"]),
                ),
            )

    def apply_prediction(self, key: bytes, prediction: Mapping[str, Any] | None) -> None:
        """A record of ``products.predictions``: its top-1 exclusive category is kept, with the
        top-1 of the previous model version that predicted the product (how much a new version
        changes predictions: the stopping criterion)."""
        pid = key.decode("utf-8", "replace")
        top = (prediction or {}).get("exclusive_top_k") or []
        with self._lock:
            if not top or not top[0].get("path"):
                self._db.execute("DELETE FROM predicted WHERE product_id = ?", (pid,))
                return
            version = int((prediction or {}).get("model_version") or 0)
            old = self._rows(
                "SELECT category_id, version, prev_category_id, prev_version FROM predicted "
                "WHERE product_id = ?",
                (pid,),
            )
            prev: tuple[Any, Any] = (None, None)
            if old and old[0]["version"] < version:  # a newer version: the current one is prev
                prev = (old[0]["category_id"], old[0]["version"])
                # counted once per product and step (the contingency of the two versions' top-1)
                self._db.execute(
                    "INSERT INTO version_pairs VALUES (?,?,?,?,1) ON CONFLICT "
                    "(prev_version, version, prev_category_id, category_id) DO UPDATE SET n = n + 1",
                    (old[0]["version"], version, old[0]["category_id"], str(top[0]["category_id"])),
                )
            elif old:  # the same version again (a backfill, a replay): keep what came before
                prev = (old[0]["prev_category_id"], old[0]["prev_version"])
            self._db.execute(
                "INSERT OR REPLACE INTO predicted VALUES (?,?,?,?,?,?,?)",
                (
                    pid,
                    str(top[0]["category_id"]),
                    json.dumps(top[0]["path"], ensure_ascii=False),
                    version,
                    *prev,
                    float(top[0].get("probability") or 0.0),
                ),
            )

    def kinds(self, product_ids: Sequence[str]) -> dict[str, tuple[str, float]]:
        """Product id -> (top-1 predicted category id, its probability), for those predicted:
        the similarity search's same-kind term (:mod:`prodcat.serving.product_vectors`)."""
        rows = self._rows_by_id(
            "SELECT product_id, category_id, probability FROM predicted", product_ids
        )
        return {row["product_id"]: (row["category_id"], float(row["probability"])) for row in rows}

    def version_changes(self) -> list[dict[str, Any]]:
        """Per (previous version, version) and pair of top-1s: how many products went from one
        to the other when the newer version predicted them (kept after later versions)."""
        rows = self._rows(
            "SELECT prev_version, version, prev_category_id, category_id, n FROM version_pairs "
            "ORDER BY prev_version, version"
        )
        return [dict(row) for row in rows]

    def apply_mapping(self, key: bytes, value: bytes | None) -> None:
        """A record of ``feeds.mappings`` (JSON :class:`~prodcat.training.mappings.Decision`)."""
        text = key.decode("utf-8", "replace")
        with self._lock:
            if value is None:
                self._db.execute("DELETE FROM mappings WHERE key = ?", (text,))
                return
            Decision.from_json(value)  # a value that does not parse raises before it is kept
            self._db.execute("INSERT OR REPLACE INTO mappings VALUES (?,?)", (text, value))

    def apply_taxonomy_event(self, key: bytes, value: bytes | None) -> None:
        """A record of ``taxonomy.events`` (JSON: a change, its id map and its report)."""
        text = key.decode("utf-8", "replace")
        with self._lock:
            if value is None:
                self._db.execute("DELETE FROM taxonomy_events WHERE change_id = ?", (text,))
                return
            event = json.loads(value)
            self._db.execute(
                "INSERT OR REPLACE INTO taxonomy_events VALUES (?,?,?)",
                (text, int(event.get("at") or 0), value),
            )

    def apply_suspect(self, key: bytes, value: bytes | None) -> None:
        """A record of ``labels.suspect`` (JSON :class:`~prodcat.training.firewall.SuspectLabel`;
        key = the label's key, a tombstone when the firewall cleared it)."""
        product_id = key.decode("utf-8", "replace").rsplit(KEY_SEPARATOR, 1)[0]
        with self._lock:
            if value is None:
                self._db.execute("DELETE FROM suspects WHERE product_id = ?", (product_id,))
                return
            record = SuspectLabel.from_json(value)  # one that does not parse raises, unkept
            self._db.execute(
                "INSERT OR REPLACE INTO suspects VALUES (?,?,?,?,?,?)",
                (
                    record.product_id,
                    record.status,
                    record.source,
                    record.annotator,
                    record.flagged_at,
                    value,
                ),
            )

    def held_suspects(self, limit: int) -> list[SuspectLabel]:
        """Labels the firewall holds, longest held first."""
        rows = self._rows(
            "SELECT value FROM suspects WHERE status = ? ORDER BY flagged_at, product_id LIMIT ?",
            (HELD, limit),
        )
        return [SuspectLabel.from_json(r["value"]) for r in rows]

    def suspect(self, product_id: str) -> SuspectLabel | None:
        rows = self._rows("SELECT value FROM suspects WHERE product_id = ?", (product_id,))
        return SuspectLabel.from_json(rows[0]["value"]) if rows else None

    def suspect_counts(self) -> list[dict[str, Any]]:
        """Held and confirmed labels per status, source and annotator."""
        rows = self._rows(
            "SELECT status, source, COALESCE(annotator, '-') AS annotator, COUNT(*) AS n "
            "FROM suspects GROUP BY status, source, annotator ORDER BY status, source, annotator"
        )
        return [dict(r) for r in rows]

    def apply_revoked_session(self, key: bytes, value: bytes | None) -> None:
        """A record of ``ui.sessions.revoked`` (JSON ``{"expires_at": unix seconds}``; key = the
        session id): a logout on any UI replica. Expired ones are dropped as new ones come."""
        if value is None:
            return
        expires_at = float(json.loads(value)["expires_at"])
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO revoked_sessions VALUES (?,?)",
                (key.decode("utf-8", "replace"), expires_at),
            )
            self._db.execute("DELETE FROM revoked_sessions WHERE expires_at < ?", (time.time(),))

    def session_revoked(self, session_id: str) -> bool:
        """Whether a UI replica ended this session (logout) and it has not expired yet."""
        rows = self._rows(
            "SELECT 1 FROM revoked_sessions WHERE session_id = ? AND expires_at >= ?",
            (session_id, time.time()),
        )
        return bool(rows)

    def apply_second_opinion(self, key: bytes, value: bytes | None) -> None:
        """A record of ``labels.second`` (JSON: a second annotator's label; key = product id)."""
        product_id = key.decode("utf-8", "replace")
        with self._lock:
            if value is None:
                self._db.execute("DELETE FROM second_opinions WHERE product_id = ?", (product_id,))
                return
            data = json.loads(value)
            self._db.execute(
                "INSERT OR REPLACE INTO second_opinions VALUES (?,?,?,?,?,?,?)",
                (
                    product_id,
                    str(data["annotator"]),
                    str(data["category_id"]),
                    str(data["first_annotator"]),
                    str(data["first_category_id"]),
                    int(data["labelled_at"]),
                    value,
                ),
            )

    def second_opinion_requests(
        self, annotator: str, product_id: str | None = None
    ) -> list[QueuedRequest]:
        """Double-labelled requests a person other than ``annotator`` answered (the label is
        theirs, not a review's) and nobody has labelled a second time: oldest answer first (only
        ``product_id``'s, when given)."""
        only, params = ("AND r.product_id = ? ", (product_id,)) if product_id else ("", ())
        rows = self._rows(
            "SELECT r.* FROM requests r JOIN labels l ON l.key = r.product_id || ? "
            "WHERE r.double = 1 AND l.source = 'human' AND coalesce(l.strategy, '') != 'review' "
            f"AND coalesce(l.annotator, '') NOT IN ('', ?) {only}AND NOT EXISTS "
            "(SELECT 1 FROM second_opinions s WHERE s.product_id = r.product_id) "
            "ORDER BY l.labelled_at, r.product_id LIMIT 200",
            (_ANSWERING, annotator, *params),
        )
        return [_queued(row) for row in rows]

    def second_opinion_pending(self, product_id: str, annotator: str) -> QueuedRequest | None:
        """The request of ``product_id`` if ``annotator`` may label it a second time."""
        found = self.second_opinion_requests(annotator, product_id)
        return found[0] if found else None

    def second_opinions(self) -> list[dict[str, Any]]:
        rows = self._rows(
            "SELECT product_id, first_annotator, first_category_id, annotator, category_id "
            "FROM second_opinions ORDER BY product_id"
        )
        return [dict(row) for row in rows]

    # -- the queue ------------------------------------------------------------------------------

    def open_requests(self, strategy: str | None = None) -> Iterator[QueuedRequest]:
        """Unanswered requests, oldest first (a generator: callers stop at the first they can use).

        Rows are fetched a page at a time under the lock, so a long queue costs no memory.
        """
        clause, params = _strategy_clause(strategy)
        after: tuple[int, str] = (-(2**62), "")
        while True:
            rows = self._rows(
                f"SELECT r.* FROM requests r WHERE {_OPEN}{clause} "
                "AND (r.requested_at, r.product_id) > (?, ?) "
                "ORDER BY r.requested_at, r.product_id LIMIT 200",
                (*params, *after),
            )
            for row in rows:
                yield _queued(row)
            if len(rows) < 200:
                return
            after = (rows[-1]["requested_at"], rows[-1]["product_id"])

    def open_request(self, product_id: str) -> QueuedRequest | None:
        rows = self._rows(
            f"SELECT r.* FROM requests r WHERE r.product_id = ? AND {_OPEN}", (product_id,)
        )
        return _queued(rows[0]) if rows else None

    def request(self, product_id: str) -> QueuedRequest | None:
        rows = self._rows("SELECT r.* FROM requests r WHERE r.product_id = ?", (product_id,))
        return _queued(rows[0]) if rows else None

    def depth(self) -> dict[str, int]:
        """Unanswered requests by strategy."""
        rows = self._rows(
            f"SELECT r.strategy, count(*) AS n FROM requests r WHERE {_OPEN} GROUP BY r.strategy"
        )
        return {row["strategy"]: row["n"] for row in rows}

    def strategies(self) -> list[str]:
        return [row[0] for row in self._rows("SELECT DISTINCT strategy FROM requests ORDER BY 1")]

    def live_label(self, key: bytes) -> LiveLabel | None:
        rows = self._rows(
            "SELECT key, product_id, annotator, labelled_at, value FROM labels WHERE key = ?",
            (key.decode("utf-8", "replace"),),
        )
        if not rows:
            return None
        row = rows[0]
        return LiveLabel(
            row["key"], row["product_id"], row["annotator"], row["labelled_at"], row["value"]
        )

    # -- products and categories ----------------------------------------------------------------

    def product(self, product_id: str) -> dict[str, Any] | None:
        rows = self._rows("SELECT * FROM products WHERE product_id = ?", (product_id,))
        return _product(rows[0]) if rows else None

    def products(self, product_ids: list[str]) -> dict[str, dict[str, Any]]:
        rows = self._rows_by_id("SELECT * FROM products", product_ids)
        return {row["product_id"]: _product(row) for row in rows}

    def search_products(
        self, text: str, limit: int, *, with_image: bool = True
    ) -> list[dict[str, Any]]:
        """Products whose title or brand has a word starting with the longest word of ``text``
        and contains its other words; shortest titles first (the closest matches)."""
        wanted = sorted(words(text, 8), key=len, reverse=True)
        if not wanted:
            return []
        first, rest = wanted[0], wanted[1:]
        image = " AND p.image_url != ''" if with_image else ""
        others = "".join(" AND p.search_text LIKE ? ESCAPE '\\'" for _ in rest)
        rows = self._rows(
            "SELECT p.* FROM products p WHERE p.product_id IN (SELECT product_id FROM title_words "
            f"WHERE word >= ? AND word < ? LIMIT 5000){image}{others} "
            "ORDER BY length(p.title), p.title LIMIT ?",
            (first, first + "\U0010ffff", *(_like(w) for w in rest), limit),
        )
        return [_product(row) for row in rows]

    def search_categories(self, text: str, limit: int) -> list[dict[str, Any]]:
        """Category prefixes seen on products whose path contains ``text`` (shallow first)."""
        pattern = _like(text.strip())
        rows = self._rows(
            "SELECT category_id, path, depth FROM categories WHERE path LIKE ? ESCAPE '\\' "
            "ORDER BY depth, path LIMIT ?",
            (pattern, limit),
        )
        return [dict(row) for row in rows]

    def category_path(self, category_id: str) -> str | None:
        rows = self._rows("SELECT path FROM categories WHERE category_id = ?", (category_id,))
        return rows[0]["path"] if rows else None

    # -- feed-category mappings -----------------------------------------------------------------

    def mapping_evidence(self, feed: str | None = None) -> list[dict[str, Any]]:
        """Products grouped by (feed, feed path, top-1 predicted path, protected label's
        category): ``n`` products each. Mining reads these groups, not every product."""
        where, params = ("AND p.feed = ?", (feed,)) if feed else ("", ())
        rows = self._rows(
            "SELECT coalesce(p.feed, '') AS feed, p.category_path AS feed_path, "
            "pr.path AS predicted, l.category_id AS labelled, count(*) AS n FROM products p "
            "LEFT JOIN predicted pr ON pr.product_id = p.product_id "
            f"LEFT JOIN labels l ON {_PROTECTED_LABEL} "
            f"WHERE p.category_path != '[]' {where} GROUP BY 1, 2, 3, 4",
            params,
        )
        return [
            {
                "feed": row["feed"],
                "feed_path": tuple(json.loads(row["feed_path"])),
                "predicted": tuple(json.loads(row["predicted"])) if row["predicted"] else (),
                "labelled": row["labelled"],
                "n": row["n"],
            }
            for row in rows
        ]

    def predicted_paths(self) -> dict[str, tuple[str, ...]]:
        """Category id → path of every top-1 prediction (how labels' ids read as paths when no
        vocabulary knows them)."""
        rows = self._rows("SELECT category_id, min(path) AS path FROM predicted GROUP BY 1")
        return {row["category_id"]: tuple(json.loads(row["path"])) for row in rows}

    def feeds(self) -> list[str]:
        rows = self._rows(
            "SELECT DISTINCT feed FROM products WHERE feed IS NOT NULL AND category_path != '[]' "
            "ORDER BY 1"
        )
        return [row[0] for row in rows]

    def feed_path_products(self, feed: str, feed_path: list[str]) -> tuple[list[str], int]:
        """Product ids of ``feed_path`` of ``feed`` that a mapping may label, and how many others
        have a label from a person or an import."""
        rows = self._rows(
            f"SELECT p.product_id, EXISTS (SELECT 1 FROM labels l WHERE {_PROTECTED_LABEL}) "
            "AS protected FROM products p "
            "WHERE p.feed = ? AND p.category_path = ? ORDER BY p.product_id",
            (feed, json.dumps(list(feed_path), ensure_ascii=False)),
        )
        free = [row["product_id"] for row in rows if not row["protected"]]
        return free, len(rows) - len(free)

    def mapping_decisions(self) -> dict[str, Decision]:
        rows = self._rows("SELECT value FROM mappings")
        decisions = (Decision.from_json(row["value"]) for row in rows)
        return {decision.key: decision for decision in decisions}

    def taxonomy_events(self, limit: int = 200) -> list[dict[str, Any]]:
        """The latest taxonomy changes, newest first."""
        rows = self._rows(
            "SELECT value FROM taxonomy_events ORDER BY at DESC, change_id LIMIT ?", (limit,)
        )
        return [json.loads(row["value"]) for row in rows]

    # -- progress and the report ----------------------------------------------------------------

    def label_stats(self, since_ms: int) -> dict[str, Any]:
        """Human exclusive labels: per hour since ``since_ms``, per strategy and per annotator."""
        base = "FROM labels WHERE source = 'human' AND objective = 'exclusive'"
        hours = self._rows(
            f"SELECT labelled_at / 3600000 AS hour, count(*) AS n {base} AND labelled_at >= ? "
            "GROUP BY hour ORDER BY hour",
            (since_ms,),
        )
        strategies = self._rows(
            f"SELECT coalesce(strategy, '(none)') AS strategy, count(*) AS n, "
            f"avg(time_taken_ms) AS ms {base} GROUP BY 1 ORDER BY n DESC"
        )
        annotators = self._rows(
            f"SELECT coalesce(annotator, '?') AS annotator, count(*) AS n, "
            f"sum(labelled_at >= ?) AS recent, avg(time_taken_ms) AS ms {base} "
            "GROUP BY 1 ORDER BY n DESC",
            (since_ms,),
        )
        return {
            "hours": {row["hour"]: row["n"] for row in hours},
            "strategies": [dict(row) for row in strategies],
            "annotators": [dict(row) for row in annotators],
        }

    def answered_requests(self, strategy: str, since_ms: int) -> list[dict[str, Any]]:
        """People's exclusive labels since ``since_ms`` that answered a request of ``strategy``:
        the feed, the label's category and the suggestions the request carried (the model's
        top-k when it was asked, by the version the labeller saw)."""
        rows = self._rows(
            "SELECT coalesce(p.feed, '') AS feed, l.category_id, r.suggestions, r.model_version "
            "FROM labels l JOIN requests r ON l.key = r.product_id || ? "
            "LEFT JOIN products p ON p.product_id = r.product_id "
            "WHERE l.source = 'human' AND l.strategy = ? AND l.labelled_at >= ? "
            "AND l.category_id IS NOT NULL",
            (_ANSWERING, strategy, since_ms),
        )
        return [{**dict(row), "suggestions": json.loads(row["suggestions"])} for row in rows]

    def judged_pairs(self) -> list[dict[str, Any]]:
        """Per query setting and neighbour: its rank (the best shown) and the share of annotators
        who found it relevant."""
        rows = self._rows(
            "SELECT model_version, query, coalesce(category_id, '') AS category_id, neighbour, "
            "min(rank) AS rank, avg(relevant) AS relevance, count(*) AS votes FROM judgements "
            "GROUP BY model_version, query, category_id, neighbour"
        )
        return [dict(row) for row in rows]

    def judgement_count(self) -> int:
        return int(self._rows("SELECT count(*) FROM judgements")[0][0])


class _Batch:
    def __init__(self, view: TopicView) -> None:
        self.view = view

    def __enter__(self) -> TopicView:
        self.view._lock.acquire()
        self.view._db.execute("BEGIN")
        return self.view

    def __exit__(self, exc_type: object, *rest: object) -> None:
        try:
            self.view._db.execute("ROLLBACK" if exc_type else "COMMIT")
        finally:
            self.view._lock.release()


def _queued(row: sqlite3.Row) -> QueuedRequest:
    return QueuedRequest(
        row["product_id"],
        row["strategy"],
        row["score"],
        json.loads(row["suggestions"]),
        row["model_name"],
        row["model_version"],
        row["requested_at"],
        row["decision"],
        json.loads(row["partial_path"] or "[]"),
    )


def _product(row: sqlite3.Row) -> dict[str, Any]:
    product = dict(row)
    product["category_path"] = json.loads(product["category_path"])
    if product["description"] is not None:  # kept compressed: most of a product's bytes
        product["description"] = zlib.decompress(product["description"]).decode()
    del product["search_text"]
    return product
