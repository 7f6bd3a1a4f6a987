"""The PostgreSQL fast path of the SQLAlchemy sink: one round trip per run of upserts.

Large runs are sent with COPY (text format) into a per-session staging table that has the
target columns' types and nothing else (no constraints, defaults or triggers), then merged
with one ``INSERT .. SELECT .. ON CONFLICT DO UPDATE``. Small runs, or values without a plain
text form, use a multi-row ``VALUES`` list (psycopg2 ``execute_values``). Either way a row
identical to the target's is left alone (``IS DISTINCT FROM``), so replays fire no trigger.
Values that are PostgreSQL's own text (json, arrays, intervals, bytea as ``\\x..``) are sent
as that text, which the server reads back into the column's type exactly. `copy_text` runs
once per row: compiled where cdc._speedups built (cdc/native.py); `copy_text_py` is the same
in Python.
"""

from __future__ import annotations

import datetime as dt
import io
import json
from decimal import Decimal
from typing import Any

import psycopg2.extras

from cdc.native import speedups

COPY_MIN_ROWS = 64
UNIQUE_VIOLATION = "23505"
# After a run of inserts found a key already there, this many runs of the table go by the
# staging table before COPY straight into the table is tried again.
FRESH_RETRY_AFTER = 50
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _other_text(v: Any) -> str | None:
    """The COPY text (before escaping) of a value not str, int, bool, float or Decimal."""
    t = v.__class__
    if t is dt.datetime or t is dt.date or t is dt.time:
        return str(v.isoformat())
    if t is dict:
        return json.dumps(v)
    return None


def copy_text(rows: list[dict[str, Any]], names: tuple[str, ...]) -> bytes | None:
    """Rows in COPY text format (UTF-8), or None if a value has no simple text form."""
    if speedups is not None:
        return speedups.copy_rows(rows, names, _other_text)
    return copy_text_py(rows, names)


def copy_text_py(rows: list[dict[str, Any]], names: tuple[str, ...]) -> bytes | None:
    """`copy_text` in Python."""
    lines = []
    for r in rows:
        fields = []
        for c in names:
            v = r[c]
            t = v.__class__
            if v is None:
                fields.append("\\N")
            elif t is str:
                fields.append(v.translate(_COPY_ESCAPES))
            elif t is bool:
                fields.append("t" if v else "f")
            elif t is int or t is Decimal or t is float:
                fields.append(str(v))
            else:
                text = _other_text(v)
                if text is None:
                    return None
                fields.append(text.translate(_COPY_ESCAPES))
        lines.append("\t".join(fields) + "\n")
    return "".join(lines).encode()


def _param(v: Any) -> Any:
    """A value as a query parameter: psycopg2 sends every non-finite Decimal as 'NaN'."""
    if v.__class__ is Decimal and not v.is_finite():
        return str(v)  # 'Infinity', '-Infinity', 'NaN': PostgreSQL's numeric reads them
    return v


class Upserter:
    """Prepared SQL for one target table, per column set."""

    def __init__(self, table: str, schema: str | None, key: list[str],
                 compare_as_text: frozenset[str] = frozenset()) -> None:
        self.table = f"{quote(schema)}.{quote(table)}" if schema else quote(table)
        self.name = table
        self.key = key
        self.compare_as_text = compare_as_text  # columns of types without "=" (json, point)
        self._sql: dict[tuple[Any, ...], str] = {}
        self._staged_runs = 0  # > 0: runs of inserts left to stage (a key was there lately)

    def _staging(self, names: tuple[str, ...]) -> str:
        return quote(f"_strangler_stg_{self.name}_{abs(hash(names)) % 10**8}")

    def _upsert_sql(self, names: tuple[str, ...], from_staging: bool, keep: frozenset[str] = frozenset()) -> str:
        key = (*names, from_staging, keep)
        sql = self._sql.get(key)
        if sql is None:
            # `keep`: columns another side writes (ownership.yaml): a new row takes them, an
            # existing row keeps its own
            rest = [c for c in names if c not in self.key and c not in keep]
            cols = ", ".join(quote(c) for c in names)
            source = f"SELECT {cols} FROM {self._staging(names)}" if from_staging else "VALUES %s"
            sql = (f"INSERT INTO {self.table} ({cols}) {source} "
                   f"ON CONFLICT ({', '.join(quote(k) for k in self.key)}) ")
            if rest:
                sql += (f"DO UPDATE SET {', '.join(f'{quote(c)} = EXCLUDED.{quote(c)}' for c in rest)} "
                        f"WHERE ROW({', '.join(self._compared(f'{self.table}.{quote(c)}', c) for c in rest)}) "
                        f"IS DISTINCT FROM ROW({', '.join(self._compared(f'EXCLUDED.{quote(c)}', c) for c in rest)})")
            else:
                sql += "DO NOTHING"
            self._sql[key] = sql
        return sql

    def _compared(self, expr: str, column: str) -> str:
        return f"{expr}::text" if column in self.compare_as_text else expr

    def upsert(self, cursor: Any, names: tuple[str, ...], rows: list[dict[str, Any]],
               keep: frozenset[str] = frozenset(), *, inserts: bool = False) -> None:
        """Upsert `rows` (distinct keys, each with exactly the columns `names`); the columns in
        `keep` are inserted but never updated. `inserts`: every row is a source insert, so
        the table most likely lacks them all: COPY goes straight into it (half the server's
        work of staging and merging), inside a savepoint; if a key is there after all (a copy
        or replay brought it), that is undone and the rows are merged as usual."""
        text = copy_text(rows, names) if len(rows) >= COPY_MIN_ROWS else None
        if text is not None and inserts and self._insert_fresh(cursor, names, text):
            return
        if text is None:
            psycopg2.extras.execute_values(cursor, self._upsert_sql(names, False, keep),
                                           [tuple(_param(r[c]) for c in names) for r in rows],
                                           page_size=2000)
            return
        staging = self._staging(names)
        cursor.execute(f"CREATE TEMP TABLE IF NOT EXISTS {staging} AS SELECT "
                       f"{', '.join(quote(c) for c in names)} FROM {self.table} WITH NO DATA")
        cursor.copy_expert(f"COPY {staging} FROM STDIN", io.BytesIO(text))
        cursor.execute(self._upsert_sql(names, True, keep))
        cursor.execute(f"TRUNCATE {staging}")

    def _insert_fresh(self, cursor: Any, names: tuple[str, ...], text: bytes) -> bool:
        """COPY `text` straight into the table: True if done; False (nothing written) if a
        row's key was there already."""
        if self._staged_runs > 0:
            self._staged_runs -= 1
            return False
        cursor.execute("SAVEPOINT strangler_fresh")
        try:
            cursor.copy_expert(f"COPY {self.table} ({', '.join(quote(c) for c in names)}) FROM STDIN",
                               io.BytesIO(text))
        except psycopg2.Error as exc:
            cursor.execute("ROLLBACK TO SAVEPOINT strangler_fresh")
            if exc.pgcode != UNIQUE_VIOLATION:
                raise  # the row's own problem: the sink redoes the batch row by row
            self._staged_runs = FRESH_RETRY_AFTER
            return False
        cursor.execute("RELEASE SAVEPOINT strangler_fresh")
        return True
