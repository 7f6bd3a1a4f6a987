"""Id allocators of synced tables: read them, move them past the copy, reserve disjoint blocks.

While two databases hold the same logical table, a row either side creates must take an id
the other side will never take. CDC copies rows with their ids, so the collision shows up
as one side's insert silently becoming an update of the other side's row. The strategies
(README, "Ids that never collide"):

- `move_past`: after the initial copy, the new owner's allocator starts past the source's
  largest id plus headroom — enough while only one side inserts at a time.
- `reserve_block`: each side allocates inside its own half-open range [start, end) — holds
  while both sides insert. PostgreSQL also bounds the sequence (MINVALUE/MAXVALUE), so an
  exhausted block fails loudly instead of running into the other side's ids.

Allocators: PostgreSQL serial and identity columns (the sequence of
`pg_get_serial_sequence`); SQLite INTEGER PRIMARY KEY AUTOINCREMENT (its `sqlite_sequence`
row). SQLite gives a new row max(sequence, largest id present) + 1: an allocator can be
moved up, never below a row that exists, and it cannot step (no offset/increment). A
SQLite table without AUTOINCREMENT takes max(id) + 1, which nobody can move: refused.

Every function opens its own connection and changes nothing unless it says so; a change
happens under a write lock on the table, so no insert slips between the check and the set.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cdc.errors import CDCError
from cdc.sinks.sqlalchemy import make_engine

# Kinds of allocator
SEQUENCE = "sequence"  # PostgreSQL serial/identity: settable, can be bounded
AUTOINCREMENT = "autoincrement"  # SQLite sqlite_sequence: settable upwards
ROWID = "rowid"  # SQLite INTEGER PRIMARY KEY without AUTOINCREMENT: max(id) + 1, fixed
NONE = "none"  # no allocator: the application supplies every id


class IdError(CDCError):
    """An allocator cannot be read or set as asked; the message says why and what to do."""


@dataclass(frozen=True, kw_only=True)
class Allocator:
    """What a table's id allocator looks like now."""

    table: str
    column: str
    kind: str
    next_id: int | None  # what the next insert without an id gets (None: no allocator)
    max_id: int | None  # largest id present (None: empty table)
    rows: int
    sequence: str | None = None  # PostgreSQL
    min_value: int | None = None  # PostgreSQL bounds of the sequence
    max_value: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def describe(url: str, table: str, column: str = "id") -> Allocator:
    """The allocator of `table.column` in the database at `url`."""
    with _connect(url) as conn:
        return _describe(conn, table, column)


def next_id(url: str, table: str, column: str = "id") -> int:
    """The id the allocator gives the next insert that does not name one."""
    found = describe(url, table, column)
    if found.next_id is None:
        raise IdError(_no_allocator(found))
    return found.next_id


def move_past(url: str, table: str, column: str = "id", *, floor: int, headroom: int) -> int:
    """Set the allocator so the next id is >= max(largest id present, floor) + headroom;
    never moves it backwards. Returns the next id."""
    if headroom < 1:
        raise IdError(f"headroom={headroom}: give 1 or more (the next id must be past the maximum)")
    with _connect(url) as conn:
        _lock(conn, table)
        found = _describe(conn, table, column)
        if found.next_id is None:
            raise IdError(_no_allocator(found))
        wanted = max(found.max_id or 0, floor) + headroom
        if found.next_id >= wanted:
            return found.next_id
        _set_next(conn, found, wanted)
        return _describe(conn, table, column).next_id or wanted


def reserve_block(url: str, table: str, column: str = "id", *, start: int, end: int) -> None:
    """This side allocates `table.column` in [start, end): the allocator is set to `start`, or
    past the largest id already in the block (reserving again resumes, never reuses).

    Refused, changing nothing, when a row exists at or above `end` (the block would hand
    out an id beside rows that are not this side's) or the allocator cannot be set."""
    with _connect(url) as conn:
        _reserve(conn, table, column, start=start, end=end, apply=True)


def prepare_owner(url: str, tables: Iterable[str], block: tuple[int, int]) -> dict[str, Any]:
    """Give every table of a side (`url`'s database) the block [start, end), all or none:
    every table is checked before any allocator changes. For `strangler own` and
    `strangler ids reserve`; returns {"block": [start, end], "tables": {name: allocator}}."""
    start, end = block
    names = list(tables)
    with _connect(url) as conn:
        for name in names:
            _lock(conn, name)
        for name in names:  # refuse before touching anything
            _reserve(conn, name, "id", start=start, end=end, apply=False)
        for name in names:
            _reserve(conn, name, "id", start=start, end=end, apply=True)
        after = {name: _describe(conn, name, "id").as_dict() for name in names}
    return {"block": [start, end], "tables": after}


# ---- internals ---------------------------------------------------------------------------


def _reserve(conn: Connection, table: str, column: str, *, start: int, end: int, apply: bool) -> None:
    if not 1 <= start < end:
        raise IdError(f"block [{start}, {end}) is empty or starts below 1; give 1 <= start < end")
    _lock(conn, table)
    found = _describe(conn, table, column)
    if found.kind in (NONE, ROWID):
        raise IdError(_no_allocator(found))
    q = _quoted(conn, table), _quoted(conn, column)
    above = conn.exec_driver_sql(f"SELECT min({q[1]}) FROM {q[0]} WHERE {q[1]} >= {int(end)}").scalar()
    if above is not None:
        raise IdError(
            f"{table}.{column} already has id {above} at or above the block's end {end}: "
            f"ids there are not this side's, so [{start}, {end}) cannot be reserved here. "
            "Run `strangler ids show` to see both sides, then give this side a block above "
            "the largest id in use (or move the other side's rows first)"
        )
    in_block = conn.exec_driver_sql(
        f"SELECT max({q[1]}) FROM {q[0]} WHERE {q[1]} >= {int(start)} AND {q[1]} < {int(end)}"
    ).scalar()
    wanted = start if in_block is None else int(in_block) + 1
    if found.next_id is not None and start <= found.next_id < end:
        wanted = max(wanted, found.next_id)  # resume inside the block, never reuse an id
    if wanted >= end:
        raise IdError(f"{table}.{column}: the block [{start}, {end}) is used up (next would be "
                      f"{wanted}); reserve a new block for this side")
    if apply:
        _set_next(conn, found, wanted, bounds=(start, end - 1))


def _describe(conn: Connection, table: str, column: str) -> Allocator:
    q = _quoted(conn, table), _quoted(conn, column)
    try:
        rows, max_id = conn.exec_driver_sql(f"SELECT count(*), max({q[1]}) FROM {q[0]}").one()
    except sa.exc.DBAPIError as exc:
        raise IdError(f"cannot read {table}.{column}: {exc.orig}; check the table and column "
                      "names (and that the database's migrations ran)") from None
    base = {"table": table, "column": column, "rows": int(rows),
            "max_id": None if max_id is None else int(max_id)}
    if conn.dialect.name == "sqlite":
        return _describe_sqlite(conn, table, column, base)
    return _describe_pg(conn, table, column, base)


def _describe_sqlite(conn: Connection, table: str, column: str, base: dict[str, Any]) -> Allocator:
    info = conn.exec_driver_sql(f"PRAGMA table_info({_quoted(conn, table)})").all()
    pk = [r for r in info if r[5]]
    rowid_alias = len(pk) == 1 and pk[0][1] == column and str(pk[0][2]).upper() == "INTEGER"
    if not rowid_alias:
        return Allocator(kind=NONE, next_id=None, **base)
    top = base["max_id"] or 0
    ddl = conn.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).scalar() or ""
    if not re.search(r"\bAUTOINCREMENT\b", ddl, re.IGNORECASE):
        return Allocator(kind=ROWID, next_id=top + 1, **base)
    seq = conn.exec_driver_sql("SELECT seq FROM sqlite_sequence WHERE name = ?", (table,)).scalar()
    return Allocator(kind=AUTOINCREMENT, next_id=max(int(seq or 0), top) + 1, **base)


def _describe_pg(conn: Connection, table: str, column: str, base: dict[str, Any]) -> Allocator:
    seq = conn.execute(sa.text("SELECT pg_get_serial_sequence(:t, :c)"),
                       {"t": _quoted(conn, table), "c": column}).scalar()
    if seq is None:
        return Allocator(kind=NONE, next_id=None, **base)
    inc, lo, hi = conn.execute(sa.text(
        "SELECT seqincrement, seqmin, seqmax FROM pg_sequence WHERE seqrelid = CAST(:s AS regclass)"),
        {"s": seq}).one()
    last, called = conn.exec_driver_sql(f"SELECT last_value, is_called FROM {seq}").one()
    upcoming = int(last) + int(inc) if called else int(last)
    return Allocator(kind=SEQUENCE, next_id=upcoming, sequence=seq, min_value=int(lo),
                     max_value=int(hi), **base)


def _set_next(conn: Connection, found: Allocator, value: int,
              bounds: tuple[int, int] | None = None) -> None:
    """Make `value` the next id; `bounds` (PostgreSQL) become the sequence's MIN/MAXVALUE."""
    if found.kind == AUTOINCREMENT:
        if found.max_id is not None and value <= found.max_id:  # SQLite's max rule
            raise IdError(f"{found.table}.{found.column}: SQLite gives the next row an id past "
                          f"the largest present ({found.max_id}), so its next id cannot be "
                          f"{value}; delete or move those rows first")
        done = conn.exec_driver_sql("UPDATE sqlite_sequence SET seq = ? WHERE name = ?",
                                    (value - 1, found.table))
        if done.rowcount == 0:
            conn.exec_driver_sql("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)",
                                 (found.table, value - 1))
        return
    if found.kind != SEQUENCE:
        raise IdError(_no_allocator(found))
    lo, hi = bounds or (min(found.min_value or 1, value), max(found.max_value or value, value))
    try:
        # one statement: the bounds and the position change together (identity sequences too)
        conn.exec_driver_sql(f"ALTER SEQUENCE {found.sequence} MINVALUE {int(lo)} MAXVALUE "
                             f"{int(hi)} START WITH {int(lo)} RESTART WITH {int(value)}")
    except sa.exc.DBAPIError as exc:
        raise IdError(f"cannot set the sequence {found.sequence} of {found.table}.{found.column} "
                      f"to {value}: {exc.orig}; the role needs to own the table (ALTER SEQUENCE)"
                      ) from None


def _lock(conn: Connection, table: str) -> None:
    """No insert between the check and the set (SQLite: the transaction began IMMEDIATE)."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"LOCK TABLE {_quoted(conn, table)} IN SHARE ROW EXCLUSIVE MODE")


def _no_allocator(found: Allocator) -> str:
    if found.kind == ROWID:
        return (f"{found.table}.{found.column} is a SQLite INTEGER PRIMARY KEY without "
                "AUTOINCREMENT: SQLite gives max(id) + 1 and the allocator cannot be set. "
                "Recreate the table with INTEGER PRIMARY KEY AUTOINCREMENT (the catalog "
                "service's migration 0002 does) and run this again")
    return (f"{found.table}.{found.column} has no id allocator (not a serial/identity column, "
            "not a SQLite INTEGER PRIMARY KEY): the application picks every id, so no range can "
            "be set here; give the column a sequence, or use UUID/ULID keys (README)")


def _quoted(conn: Connection, name: str) -> str:
    return conn.dialect.identifier_preparer.quote(name)


@contextmanager
def _connect(url: str) -> Iterator[Connection]:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if not path or path == ":memory:" or not os.path.exists(path):
            raise IdError(f"SQLite database {path or url!r} does not exist; create it first "
                          "(the side's migrations) or fix the URL")
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            yield conn
    except sa.exc.OperationalError as exc:
        raise IdError(f"cannot reach the database: {exc.orig}") from None
    finally:
        engine.dispose()
