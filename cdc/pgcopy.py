"""The initial copy PostgreSQL -> PostgreSQL by COPY, with no Python per row (issue 14).

Inside the slot's exported snapshot, each chunk of a table is
``COPY (SELECT <mapped expressions> FROM source WHERE key in (after, upto]) TO STDOUT`` on the
source, fed to ``COPY target (...) FROM STDIN`` on the sink's own connection (its replication
origin set, so a stream back out of the target skips the rows), in one target transaction
with the chunk's progress: a crash resumes after the last committed chunk, as the event path
does. The mapping runs in SQL: a rename is a column list, a conversion its
``Converter.pg_sql`` (the expression `verify` already compares with), each value cast to the
target column's type. Binary format when every target type is built in (the source database
can name it), text otherwise.

Only where it is exactly what the event path would do (`plan` says why not, and the caller
copies by events):
    * the target table is empty (nothing to upsert or sweep; a re-copy goes by events);
    * no filter on the table;
    * every conversion has an SQL form;
    * under ownership, the stream's side owns the table (a new row takes every column).
A chunk the target refuses (a value a conversion cannot take) is rolled back and the table
goes on by events from there, which dead-letters the bad rows with their reason.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cdc import convert
from cdc.mapping import TableMapping
from cdc.sinks.owned import Rule
from cdc.snapshot import key_bounds, quote_name

__all__ = ["CopyPlan", "plan"]


@dataclass(frozen=True)
class CopyPlan:
    """The SQL of one table's COPY chunks."""

    source: str  # quoted source table
    key: tuple[str, ...]  # source key columns
    select: str  # the mapped expressions, cast to the target types
    target_copy: str  # COPY target (cols) FROM STDIN ...
    binary: bool

    def _where(self, after: Sequence[Any] | None, upto: Sequence[Any] | None) -> tuple[str, list[Any]]:
        parts, args = key_bounds(self.key, after, upto)
        return (" WHERE " + " AND ".join(parts)) if parts else "", args

    def upto(self, cursor: Any, after: Sequence[Any] | None, chunk: int) -> list[Any] | None:
        """The last key of the next `chunk` rows after `after` (None: fewer rows are left)."""
        where, args = self._where(after, None)
        key = ", ".join(quote_name(k) for k in self.key)
        cursor.execute(f"SELECT {key} FROM {self.source}{where} ORDER BY {key} "
                       f"OFFSET {int(chunk) - 1} LIMIT 1", args)
        row = cursor.fetchone()
        return list(row) if row is not None else None

    def read(self, cursor: Any, after: Sequence[Any] | None, upto: Sequence[Any] | None) -> io.BytesIO:
        """The rows with key in (after, upto], in COPY format (one chunk: bounded memory)."""
        where, args = self._where(after, upto)
        query = cursor.mogrify(f"SELECT {self.select} FROM {self.source}{where}", args).decode()
        buf = io.BytesIO()
        cursor.copy_expert(f"COPY ({query}) TO STDOUT{' (FORMAT binary)' if self.binary else ''}", buf)
        buf.seek(0)
        return buf

    def write(self, cursor: Any, data: io.BytesIO) -> int:
        """Load a chunk into the target; how many rows it held."""
        cursor.copy_expert(self.target_copy, data, size=1 << 16)
        return int(cursor.rowcount)


def target_types(cursor: Any, table: str) -> dict[str, tuple[str, bool]]:
    """Per column of the target table: its type as SQL and whether it is built in."""
    cursor.execute("""SELECT a.attname, format_type(a.atttypid, a.atttypmod),
                             t.typnamespace = 'pg_catalog'::regnamespace AND t.typtype = 'b'
                      FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
                      WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped""",
                   (quote_name(table),))
    return {name: (typ, bool(builtin)) for name, typ, builtin in cursor.fetchall()}


def plan(tm: TableMapping, rule: Rule | None, target_cursor: Any) -> tuple[CopyPlan | None, str]:
    """How to copy `tm` by COPY, or (None, why not)."""
    if rule is not None and not rule.rows:
        return None, f"{rule.owner} owns the table"
    if tm.spec.filter:
        return None, "the table has a filter"
    if any(conv is not None and conv not in convert.CONVERTERS for _s, _t, conv in tm.columns):
        return None, "a conversion has no SQL form"
    types = target_types(target_cursor, tm.target)
    missing = [t for _s, t, _c in tm.columns if t not in types]
    if missing:
        return None, f"target columns {', '.join(missing)} not found"
    target_cursor.execute(f"SELECT 1 FROM {quote_name(tm.target)} LIMIT 1")
    if target_cursor.fetchone() is not None:
        return None, "the target table holds rows (a re-copy upserts and sweeps)"
    binary = all(types[t][1] for _s, t, _c in tm.columns)
    exprs = []
    for src, tgt, conv in tm.columns:
        expr = convert.CONVERTERS[conv].pg_sql.format(c=quote_name(src)) if conv else quote_name(src)
        exprs.append(f"({expr})::{types[tgt][0]}" if binary or conv else expr)
    cols = ", ".join(quote_name(t) for _s, t, _c in tm.columns)
    return CopyPlan(source=quote_name(tm.source), key=tm.key, select=", ".join(exprs),
                    target_copy=f"COPY {quote_name(tm.target)} ({cols}) FROM STDIN"
                                f"{' (FORMAT binary)' if binary else ''}",
                    binary=binary), ""
