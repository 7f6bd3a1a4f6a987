"""SQLite source (the embedded default): generated AFTER triggers append every change to a
changelog table with a monotonic id; the stream reads it in id order.

    strangler_cdc_changelog(id INTEGER PRIMARY KEY AUTOINCREMENT, stream, tbl, op, old, new, ts_ms,
                            origin)

``origin`` is the stream whose sink made the change (the marker row of cdc/origin.py), NULL
for the application's own writes; the stream skips the changes of the streams that feed its
database (``cfg.skip_origins``): no echo. Skipped entries are pruned at any time.

Row images are JSON built by the triggers. ``json_object`` takes at most 127 arguments (63
columns), so wide tables chain ``json_insert`` calls, 63 columns each. A stream's triggers are
(re)generated from the live columns on every start; ``drop`` removes them. Acknowledged
entries are pruned. Positions are ``(changelog id, 0)``. Snapshot consistency comes from one
read transaction that reads the changelog's high-water mark and the tables together.
Schema changes are noticed through ``PRAGMA schema_version`` and reported as Relations.

Source transactions stay whole. Triggers run inside the writer's transaction, and SQLite has
one writer at a time, so a transaction's changelog ids are consecutive and a reader sees a
prefix of whole transactions: the stream's highest id visible to one read is the end of a
transaction. SQLite offers no per-transaction id to a trigger, so those heads are the only
boundaries known: each poll reads its rows and the head in one statement, remembers the head,
and marks ``last`` (commit here) only on a row that was a head. Rows committed while the
stream was not running therefore apply as one target transaction, in bounded batches.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from collections import deque
from decimal import Decimal
from typing import Any

from cdc.config import StreamConfig
from cdc.errors import SourceError
from cdc.events import ChangeEvent, Position
from cdc.mapping import TableSchema
from cdc.origin import SQLITE_MARKER, SQLITE_MARKER_DDL
from cdc.sources import MESSAGE_PREFIX, Item, Message, Relation

CHANGELOG = "strangler_cdc_changelog"
PER_CALL = 63  # json_object/json_insert: at most 127 arguments


def sqlite_path(url: str) -> str:
    if "///" not in url:
        raise SourceError(f"{url!r} is not a sqlite:///path URL")
    return url.split("///", 1)[1]


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def json_row(ref: str, columns: list[str], types: dict[str, str]) -> str:
    """SQL building a JSON object of `ref`'s columns (NEW/OLD), any number of columns."""
    def val(c: str) -> str:
        v = f"{ref}.{_q(c)}"
        return f"CASE WHEN typeof({v}) = 'blob' THEN hex({v}) ELSE {v} END" if "BLOB" in types[c].upper() else v

    first, rest = columns[:PER_CALL], columns[PER_CALL:]
    expr = "json_object(" + ", ".join(f"'{c}', {val(c)}" for c in first) + ")"
    while rest:
        part, rest = rest[:PER_CALL], rest[PER_CALL:]
        expr = f"json_insert({expr}, " + ", ".join(f"'$.\"{c}\"', {val(c)}" for c in part) + ")"
    return expr


def captured_sql(skip: tuple[str, ...]) -> str:
    """A condition on changelog rows: not written by the sinks of streams in `skip` (the
    stream names are its ``?`` parameters, in order)."""
    return f"(origin IS NULL OR origin NOT IN ({', '.join('?' * len(skip))}))" if skip else "1"


def changelog_head_sql(cfg: StreamConfig) -> tuple[str, tuple[str, ...]]:
    """(query, parameters) of the id of the last change the stream captures, e.g. to wait
    until the target has applied it."""
    return (f"SELECT max(id) FROM {CHANGELOG} WHERE stream = ? AND {captured_sql(cfg.skip_origins)}",
            (cfg.name, *cfg.skip_origins))


class SQLiteInitialSnapshot:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def cursor(self) -> tuple[Any, str]:
        return self._conn.cursor(), "qmark"

    def close(self) -> None:
        self._conn.rollback()
        self._conn.close()


class SQLiteSource:
    def __init__(self, cfg: StreamConfig, tables: list[str], *, keys: dict[str, tuple[str, ...]] | None = None) -> None:
        self.cfg = cfg
        self.tables = tables
        self.path = sqlite_path(cfg.source_url)
        self.database = self.path  # as its streamed events carry it
        self.keys: dict[str, tuple[str, ...]] = dict(keys or {})
        self._conn = self._connect()
        self._last = 0
        self._schema_version = -1
        self._pruned_at = 0.0
        self._acked = 0
        self._heads: deque[int] = deque()  # changelog ids known to end a source transaction
        # the entries this stream captures: not those the sinks feeding this database wrote
        self._skip = tuple(cfg.skip_origins)
        self._captured = captured_sql(self._skip)

    def _connect(self) -> sqlite3.Connection:
        if not os.path.exists(self.path):
            raise SourceError(f"SQLite database {self.path} does not exist; start the monolith "
                              "(it creates it) or fix the stream's source.url")
        try:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        except sqlite3.Error as exc:
            raise SourceError(f"cannot open SQLite database {self.path}: {exc}") from exc
        conn.execute("PRAGMA busy_timeout = 30000")
        return conn

    def describe(self, tables: list[str] | None = None) -> dict[str, TableSchema]:
        names = [r[0] for r in self._conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
        out = {}
        for name in names:
            # table_xinfo: generated columns too (hidden 2/3), as PostgreSQL lists them, so one
            # mapping (e.g. `drop: [slug]`) fits both; their values are in the row images
            info = [r for r in self._conn.execute(f"PRAGMA table_xinfo({_q(name)})") if r[6] != 1]
            pk = tuple(r[1] for r in sorted((r for r in info if r[5]), key=lambda r: r[5]))
            out[name] = TableSchema(name=name, columns={r[1]: (r[2] or "").upper() for r in info}, pk=pk)
        return out

    def _trigger_sql(self, table: str, schema: TableSchema) -> list[str]:
        cols = list(schema.columns)
        base = f"strangler_{self.cfg.name}_{table}"
        ins = (f"INSERT INTO {CHANGELOG} (stream, tbl, op, origin, old, new, ts_ms) VALUES "
               f"('{self.cfg.name}', '{table}'")
        now = "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)"
        origin = f"(SELECT stream FROM {SQLITE_MARKER} LIMIT 1)"
        return [
            f"CREATE TRIGGER {_q(base + '_i')} AFTER INSERT ON {_q(table)} BEGIN {ins}, 'c', {origin}, NULL, "
            f"{json_row('NEW', cols, schema.columns)}, {now}); END",
            f"CREATE TRIGGER {_q(base + '_u')} AFTER UPDATE ON {_q(table)} BEGIN {ins}, 'u', {origin}, "
            f"{json_row('OLD', cols, schema.columns)}, {json_row('NEW', cols, schema.columns)}, {now}); END",
            f"CREATE TRIGGER {_q(base + '_d')} AFTER DELETE ON {_q(table)} BEGIN {ins}, 'd', {origin}, "
            f"{json_row('OLD', cols, schema.columns)}, NULL, {now}); END",
        ]

    def _triggers(self) -> list[str]:
        return [r[0] for r in self._conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE ?",
            (f"strangler_{self.cfg.name}_%",))]

    def install(self) -> bool:
        """(Re)generate this stream's triggers from the live columns; True if none existed."""
        schemas = self.describe()
        fresh = not self._triggers()
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.execute(
                f"CREATE TABLE IF NOT EXISTS {CHANGELOG} (id INTEGER PRIMARY KEY AUTOINCREMENT, "
                "stream TEXT NOT NULL, tbl TEXT NOT NULL, op TEXT NOT NULL, old TEXT, new TEXT, ts_ms INTEGER, "
                "origin TEXT)")
            cols = [r[1] for r in self._conn.execute(f"PRAGMA table_info({CHANGELOG})")]
            if "origin" not in cols:  # a changelog from before origins existed
                self._conn.execute(f"ALTER TABLE {CHANGELOG} ADD COLUMN origin TEXT")
            self._conn.execute(SQLITE_MARKER_DDL)  # the triggers read it
            self._conn.execute(f"CREATE INDEX IF NOT EXISTS {CHANGELOG}_stream ON {CHANGELOG} (stream, id)")
            for name in self._triggers():
                self._conn.execute(f"DROP TRIGGER {_q(name)}")
            for table in self.tables:
                for stmt in self._trigger_sql(table, schemas[table]):
                    self._conn.execute(stmt)
            self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._conn.execute("ROLLBACK")
            raise SourceError(f"cannot install CDC triggers in {self.path}: {exc}") from exc
        return fresh

    def uninstall(self) -> None:
        self._conn.execute("BEGIN IMMEDIATE")
        for name in self._triggers():
            self._conn.execute(f"DROP TRIGGER {_q(name)}")
        if self._conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (CHANGELOG,)).fetchone():
            self._conn.execute(f"DELETE FROM {CHANGELOG} WHERE stream = ?", (self.cfg.name,))
        self._conn.execute("COMMIT")

    def open(self, start_after: Position | None) -> SQLiteInitialSnapshot | None:
        fresh = self.install()
        self._schema_version = self._conn.execute("PRAGMA schema_version").fetchone()[0]
        self._last = start_after.lsn if start_after else 0
        if not fresh:
            return None
        snap = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        snap.execute("BEGIN")  # one read transaction: high-water mark and rows agree
        high = snap.execute(f"SELECT coalesce(max(id), 0) FROM {CHANGELOG} WHERE stream = ?",
                            (self.cfg.name,)).fetchone()[0]
        self._last = high
        return SQLiteInitialSnapshot(snap)

    def poll(self, max_items: int, timeout: float) -> list[Item]:
        out: list[Item] = []
        version = self._conn.execute("PRAGMA schema_version").fetchone()[0]
        if version != self._schema_version:
            self.install()  # triggers follow the live columns (new ones are captured from now)
            self._schema_version = self._conn.execute("PRAGMA schema_version").fetchone()[0]
            for name, schema in self.describe().items():
                if name in self.tables:
                    out.append(Relation(name, schema.columns, Position(self._last, 0)))
        # One statement: the rows and the head share a read snapshot. The head is the last
        # captured entry: a sink's transaction is tagged whole, so it still ends a transaction.
        cap, skip = self._captured, self._skip
        rows = self._conn.execute(
            f"SELECT id, tbl, op, old, new, ts_ms, (SELECT max(id) FROM {CHANGELOG} WHERE stream = ? AND {cap}) "
            f"FROM {CHANGELOG} WHERE stream = ? AND id > ? AND {cap} ORDER BY id LIMIT ?",
            (self.cfg.name, *skip, self.cfg.name, self._last, *skip, max_items)).fetchall()
        if not rows and not out:
            time.sleep(min(timeout, 0.05))
            return out
        heads = self._heads
        if rows and (not heads or rows[0][6] > heads[-1]):
            heads.append(rows[0][6])
        for id_, tbl, op, old, new, ts, _head in rows:
            self._last = id_
            pos = Position(id_, 0)
            last = bool(heads) and id_ >= heads[0]
            if last:
                heads.popleft()
            if op == "m":  # written alone by emit_message: what precedes it is whole
                if out and isinstance(out[-1], ChangeEvent):
                    out[-1].last = True
                out.append(Message(MESSAGE_PREFIX, new.encode(), pos))
                continue
            before = json.loads(old, parse_float=Decimal) if old else None
            after = json.loads(new, parse_float=Decimal) if new else None
            keycols = self.keys.get(tbl, ())
            image = after if after is not None else before or {}
            key = {k: image.get(k) for k in keycols}
            if op == "u" and before is not None and any(before.get(k) != key[k] for k in keycols):
                # the key itself changed: the old row goes, the new one comes
                out.append(ChangeEvent(op="d", table=tbl, key={k: before.get(k) for k in keycols},
                                       before=before, after=None, position=pos, ts_ms=ts or 0,
                                       last=False, db=self.path))
                op, pos = "c", Position(id_, 1)
            out.append(ChangeEvent(op=op, table=tbl, key=key, before=before, after=after, position=pos,
                                   ts_ms=ts or 0, last=last, db=self.path))
        return out

    def acknowledge(self, position: Position | None) -> None:
        advanced = False
        if position is not None and position.lsn > self._acked:
            self._acked, advanced = position.lsn, True
        # prune acknowledged entries (and skipped ones, which pile up while only a sink
        # writes here), not too often
        if (advanced or self._skip) and time.monotonic() - self._pruned_at > 1.0:
            self._prune()

    def _prune(self) -> None:
        self._pruned_at = time.monotonic()
        if self._acked:
            self._conn.execute(f"DELETE FROM {CHANGELOG} WHERE stream = ? AND id <= ?",
                               (self.cfg.name, self._acked))
        if self._skip:  # never streamed, so never needed
            self._conn.execute(f"DELETE FROM {CHANGELOG} WHERE stream = ? AND origin IN "
                               f"({', '.join('?' * len(self._skip))})", (self.cfg.name, *self._skip))

    def emit_message(self, content: bytes) -> None:
        try:
            self._conn.execute(f"INSERT INTO {CHANGELOG} (stream, tbl, op, old, new, ts_ms) "
                               "VALUES (?, '', 'm', NULL, ?, 0)", (self.cfg.name, content.decode()))
        except sqlite3.Error as exc:
            raise SourceError(f"cannot write to {CHANGELOG} in {self.path} ({exc}); run "
                              f"`strangler cdc install {self.cfg.name}` or `cdc run` first") from exc

    def chunk_reader(self) -> tuple[Any, str]:
        return self._conn.cursor(), "qmark"

    def slot_info(self) -> None:
        """No replication slot: the change-log table is what the source keeps for the stream."""
        return None

    def lag(self) -> tuple[float, int | None]:
        """Milliseconds since the oldest change not yet durable downstream was committed."""
        try:
            oldest = self._conn.execute(
                f"SELECT min(ts_ms) FROM {CHANGELOG} WHERE stream = ? AND id > ? AND op != 'm' "
                f"AND {self._captured}", (self.cfg.name, self._acked, *self._skip)).fetchone()[0]
        except sqlite3.Error as exc:
            raise SourceError(f"cannot read {CHANGELOG} in {self.path}: {exc}") from exc
        return (max(0.0, time.time() * 1000 - oldest) if oldest else 0.0), None

    def drop(self) -> None:
        self.uninstall()

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._prune()
        self._conn.close()
