"""Snapshots: copying table contents in key-ordered chunks, gap-free with the stream.

Two ways, one chunk reader:

* **Initial copy** inside the slot's exported snapshot (``initial_events``): nothing streams
  yet, so the copy and the stream from the consistent point meet with no gap or overlap.
* **While streaming** (the DBLog method, ``Watermarks``): emit a low watermark as a logical
  message, and when it comes back through the stream select the next chunk; drop from the
  chunk every key the stream changes until the high watermark (emitted right after the
  select) comes back; then emit the rest of the chunk as ``r`` events at the high
  watermark's position. Used to finish a copy interrupted by a crash and for
  ``strangler cdc snapshot`` (re-copy a table on demand).

Progress (the last copied key) travels on the ``r`` events and is stored by the sink in the
same transaction as the rows.

A copy also removes what the source no longer has: each chunk starts with a "range" marker
naming the keys it covers, (after, upto], and the keys to keep (the chunk's, plus those the
stream wrote inside the window); the sink deletes every other target row in that range. So a
re-copy after downtime, a lost slot or damage behind the stream's back leaves no ghost rows.
This needs keys that order alike everywhere (integers, uuids); tables keyed otherwise are
copied without the sweep, and `strangler verify` lists their ghosts as extra.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from cdc import faults
from cdc.events import ChangeEvent, Position
from cdc.mapping import TableMapping
from cdc.sources import Message

EmitFn = Callable[[bytes], None]
log = logging.getLogger("cdc.snapshot")


def quote_name(name: str) -> str:
    """A column or (schema-qualified) table name as a quoted SQL identifier."""
    ns, _, rel = name.rpartition(".")
    return ".".join('"' + part.replace('"', '""') + '"' for part in (ns, rel) if part)


def key_bounds(key: Sequence[str], after: Sequence[Any] | None, upto: Sequence[Any] | None,
               ph: str = "%s") -> tuple[list[str], list[Any]]:
    """SQL conditions, and their arguments, for rows whose `key` columns are in (after, upto]
    (None: that side unbounded); `ph` is the driver's placeholder."""
    cols = f"({', '.join(quote_name(c) for c in key)})"
    marks = f"({', '.join([ph] * len(key))})"
    parts: list[str] = []
    args: list[Any] = []
    if after is not None:
        parts.append(f"{cols} > {marks}")
        args += list(after)
    if upto is not None:
        parts.append(f"{cols} <= {marks}")
        args += list(upto)
    return parts, args


def read_chunk(cursor: Any, paramstyle: str, tm: TableMapping, after: list[Any] | None,
               limit: int) -> list[dict[str, Any]]:
    """The next `limit` rows of tm's source table with key > after, in key order."""
    cols = list(tm.source_schema.columns)
    key = list(tm.key)
    where, args = key_bounds(key, after, None, "%s" if paramstyle == "format" else "?")
    sql = f"SELECT {', '.join(quote_name(c) for c in cols)} FROM {quote_name(tm.source)}"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += f" ORDER BY {', '.join(quote_name(k) for k in key)} LIMIT {int(limit)}"
    cursor.execute(sql, args)
    return [dict(zip(cols, r, strict=True)) for r in cursor.fetchall()]


def _events(tm: TableMapping, rows: list[dict[str, Any]], at: Position, final: bool, db: str,
            extent: dict[str, Any] | None = None, schema: str = "") -> list[ChangeEvent]:
    """A chunk as events at `at`: its "range" marker first (if given), the rows, and a
    "last" marker when the table is done. Rows carry the source's database and schema and
    the time they were read, as Debezium's snapshot rows do."""
    table, key, lsn = tm.source, tm.key, at.lsn
    schema = table.rpartition(".")[0] or schema
    read_ms = int(time.time() * 1000)
    out: list[ChangeEvent] = []
    if extent is not None:
        out.append(ChangeEvent(op="r", table=table, key={}, before=None, after=None,
                               position=Position(lsn, at.seq + 1), last=False, db=db, snapshot="range",
                               extent=extent))
    seq = at.seq + 1 + len(out)
    # positional arguments (ChangeEvent's field order): this runs once per copied row
    out += [ChangeEvent("r", table, {k: r[k] for k in key}, None, r, Position(lsn, seq + i), read_ms, False,
                        db, schema, None, "true") for i, r in enumerate(rows)]
    if final:  # a row-less marker: this table is done
        out.append(ChangeEvent(op="r", table=tm.source, key={}, before=None, after=None,
                               position=Position(lsn, seq + len(rows)), last=False, db=db,
                               snapshot="last"))
    if out:
        out[-1].last = True
    return out


def _warn_unswept(tm: TableMapping) -> None:
    if not tm.key_orders_alike:
        log.warning("%s: keyed on %s, which databases may sort differently, so this copy cannot "
                    "remove target rows the source no longer has; `strangler verify` lists them "
                    "as extra", tm.source, ", ".join(tm.key))


def _extent(tm: TableMapping, after: list[Any] | None, upto: list[Any] | None,
            keep: Iterable[Iterable[Any]]) -> dict[str, Any] | None:
    """The "range" marker's body: the chunk covers keys in (after, upto] (None: unbounded)."""
    if not tm.key_orders_alike:  # a range on the target could reach another chunk's rows
        return None
    return {"after": after, "upto": upto, "keep": [list(k) for k in keep]}


def initial_events(cursor: Any, paramstyle: str, tm: TableMapping, chunk: int,
                   db: str = "", after: list[Any] | None = None, schema: str = "") -> Iterator[list[ChangeEvent]]:
    """Chunks of ``r`` events for a table read through `cursor` (inside the snapshot), from
    the key after `after` (a part already copied by COPY: cdc/pgcopy.py).

    Positions are (0, n): they precede every streamed change and are never deduplicated.
    """
    _warn_unswept(tm)
    n = 0
    while True:
        rows = read_chunk(cursor, paramstyle, tm, after, chunk)
        final = len(rows) < chunk
        keys = [[r[k] for k in tm.key] for r in rows]
        extent = _extent(tm, after, None if final else keys[-1], keys)
        yield _events(tm, rows, Position(0, n), final, db, extent, schema)
        n += len(rows) + 2
        if final:
            return
        after = [rows[-1][k] for k in tm.key]


class Watermarks:
    """DBLog chunked copy of pending tables while the stream runs (one chunk in flight)."""

    def __init__(self, *, stream: str, mappings: dict[str, TableMapping], chunk: int,
                 emit: EmitFn, reader: Callable[[], tuple[Any, str]], db: str = "", schema: str = "") -> None:
        self.stream = stream
        self.mappings = mappings
        self.chunk = chunk
        self.emit = emit
        self.reader = reader
        self.db = db
        self.schema = schema  # of a table named without one (PostgreSQL: public)
        self.pending: dict[str, list[Any] | None] = {}  # table -> last copied key
        self._wm: str | None = None
        self._table: str | None = None
        self._rows: dict[tuple[Any, ...], dict[str, Any]] | None = None
        self._final = False
        self._after: list[Any] | None = None  # the chunk in flight covers keys in (_after, _upto]
        self._upto: list[Any] | None = None
        self._keep: set[tuple[Any, ...]] = set()  # keys read or changed by the stream meanwhile
        self._completed: set[tuple[Any, ...]] = set()  # rows not read but completed (moved keys)

    def add(self, table: str, after: list[Any] | None) -> None:
        _warn_unswept(self.mappings[table])
        self.pending[table] = after

    @property
    def busy(self) -> bool:
        return self._wm is not None

    def _send(self, kind: str) -> None:
        self.emit(json.dumps({"stream": self.stream, "wm": self._wm, "kind": kind,
                              "table": self._table}).encode())

    def tick(self) -> None:
        """Start the next chunk if none is in flight."""
        if self._wm is None and self.pending:
            self._table = next(iter(self.pending))
            self._wm = uuid.uuid4().hex
            self._rows = None
            self._send("low")

    def observe(self, ev: ChangeEvent) -> None:
        """A streamed change between the watermarks wins over the chunk's copy of its row.

        A change without its unchanged TOASTed values cannot stand alone where the target
        lacks the row (it is beyond the copy): the chunk's copy completes it instead, under
        the row's new key if the change moved it — unless that key lies beyond the chunk,
        where a later chunk reads the row whole. Completing it there would make it the
        chunk's last row, and the copy would resume after it, past rows never read.
        """
        if self._rows is None or ev.table != self._table:
            return
        if ev.op == "t":
            self._rows.clear()
            return
        tm = self.mappings[ev.table]
        key = tuple(ev.key.get(k) for k in tm.key)
        self._keep.add(key)  # the stream put it there: never swept as a ghost
        if ev.unchanged and ev.after is not None:
            prior = self._rows.get(key)
            if prior is None and ev.before is not None:  # a key change: the row's old copy
                prior = self._rows.get(tuple(ev.before.get(k) for k in tm.key))
            if prior is not None and not self._beyond_chunk(tm, key):
                self._completed.add(key)
                self._rows[key] = {**prior, **ev.after}
                return
        self._rows.pop(key, None)
        self._completed.discard(key)

    def _beyond_chunk(self, tm: TableMapping, key: tuple[Any, ...]) -> bool:
        """`key` sorts after the chunk in flight, as the source sorts (integer or uuid keys;
        for others it cannot tell, and says no)."""
        return self._upto is not None and tm.key_orders_alike and key > tuple(self._upto)

    def on_message(self, msg: Message) -> list[ChangeEvent]:
        """Handle a watermark; returns the chunk's events at the high watermark."""
        try:
            body = json.loads(msg.content)
        except ValueError:
            return []
        if body.get("stream") != self.stream or body.get("wm") != self._wm or self._table is None:
            return []  # someone else's, or a stale one replayed after a restart
        tm = self.mappings[self._table]
        if body.get("kind") == "low" and self._rows is None:
            cur, style = self.reader()
            self._after = self.pending.get(self._table)
            rows = read_chunk(cur, style, tm, self._after, self.chunk)
            self._final = len(rows) < self.chunk
            self._upto = None if self._final else [rows[-1][k] for k in tm.key]
            if rows:
                self.pending[self._table] = [rows[-1][k] for k in tm.key]
            self._rows = {tuple(r[k] for k in tm.key): r for r in rows}
            self._keep = set(self._rows)
            faults.point("snapshot.after_chunk_read")
            self._send("high")
            return []
        if body.get("kind") == "high" and self._rows is not None:
            # the rows read, in key order, come last: the copy's progress is the last row's
            # key, and a row completed under a key it moved to says nothing of the rows after it
            rows = [r for k, r in self._rows.items() if k in self._completed]
            rows += [r for k, r in self._rows.items() if k not in self._completed]
            self._completed = set()
            table = self._table
            if self._final:
                del self.pending[table]
            self._wm, self._table, self._rows = None, None, None
            extent = _extent(tm, self._after, self._upto, self._keep)
            self._keep = set()
            if not rows and not self._final and extent is None:
                return []
            return _events(tm, rows, msg.position, self._final, self.db, extent, self.schema)
        return []
