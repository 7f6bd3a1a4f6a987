"""`strangler verify`: does every target table equal its mapped source? (the data-diff method)

Per table: split the source key space into ranges of ~`chunk` rows; compute row count and a
checksum per range on both sides, inside each database when both are PostgreSQL (md5 of a
canonical row text, summed), else in Python over streamed rows; bisect a mismatching range
until it is small, then compare row by row to name the keys that are missing (in the source,
not the target), extra (only in the target) or different. Keys found differing are rechecked
after a short wait (they may just be in flight within the stream's lag) before reporting.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import psycopg2.extensions

from cdc import convert
from cdc.config import Condition, StreamConfig
from cdc.mapping import TableMapping
from cdc.snapshot import key_bounds, quote_name
from cdc.sources.postgres import use_stream_values
from cdc.sources.sqlite import changelog_head_sql

ROW_LEVEL = 256  # ranges at most this big are compared row by row


@dataclass
class TableDiff:
    table: str
    target: str
    source_rows: int = 0
    missing: list[list[Any]] = field(default_factory=list)
    extra: list[list[Any]] = field(default_factory=list)
    different: list[list[Any]] = field(default_factory=list)

    @property
    def equal(self) -> bool:
        return not (self.missing or self.extra or self.different)

    def as_dict(self) -> dict[str, Any]:
        return {"table": self.table, "target": self.target, "equal": self.equal,
                "source_rows": self.source_rows, "missing": self.missing, "extra": self.extra,
                "different": self.different}


def _category(tm: TableMapping, target_column: str, source_column: str | None = None) -> str:
    """How both sides' values of a column are compared: by the target column's category.

    A timestamp kept as text on one side (the catalog's SQLite schema stores ISO text) is
    still a timestamp: `…09` and `…09.000000` are one instant, so compare as timestamps
    when the source declares one (`source_column`, given on the row-by-row path only).
    """
    cat = tm.target_schema.category(target_column)
    if cat in ("text", "unknown") and source_column is not None:
        src = tm.source_schema.category(source_column)
        if src in ("dt", "date"):
            return src
    return "text" if cat == "unknown" else cat


def canon(v: Any, cat: str) -> str:
    """One value as canonical text (Python side; matches between PostgreSQL and SQLite)."""
    if v is None:
        return "\\N"
    if cat == "bool":
        return "1" if convert.to_bool(v) else "0"
    if cat in ("int", "num", "float"):
        d = v if isinstance(v, Decimal) else Decimal(str(v))
        if d == d.to_integral_value():
            return str(int(d))
        return format(d.normalize(), "f")
    if cat == "dt":
        if isinstance(v, str):
            try:
                v = dt.datetime.fromisoformat(v)
            except ValueError:  # infinity, BC: compared as the text
                return v
        if isinstance(v, dt.datetime) and v.tzinfo is not None:
            v = v.astimezone(dt.UTC).replace(tzinfo=None)
        return v.isoformat(sep=" ") if isinstance(v, dt.datetime) else str(v)
    if cat == "date":
        return str(v)[:10]
    if isinstance(v, (bytes, memoryview)):
        return bytes(v).hex()
    if cat == "bytes" and isinstance(v, str) and v.startswith("\\x"):
        return v[2:]  # PostgreSQL's hex text of bytea
    return str(v)


def _pg_canon(expr: str, cat: str) -> str:
    if cat == "bool":
        return f"CASE WHEN ({expr})::boolean THEN '1' WHEN NOT ({expr})::boolean THEN '0' END"
    if cat in ("int", "num", "float"):
        return f"trim_scale(({expr})::numeric)::text"
    if cat == "dt":
        return f"to_char(({expr})::timestamp, 'YYYY-MM-DD HH24:MI:SS.US')"
    if cat == "json":  # json into jsonb is normalized on the way: compare normalized
        return f"({expr})::jsonb::text"
    return f"({expr})::text"


class _Side:
    """One database's view of one table for verification."""

    def __init__(self, conn: Any, table: str, key: list[str], cols: Sequence[tuple[str, str, str | None]],
                 filt: tuple[Condition, ...], tm: TableMapping | None, both_pg: bool) -> None:
        self.conn = conn
        self.table = table
        self.key = key
        self.cols = cols  # (column here, category, converter applied here)
        self.filter = filt
        self.tm = tm
        self.pg = both_pg
        raw = getattr(conn, "dbapi_connection", conn)
        self.ph = "?" if isinstance(raw, sqlite3.Connection) else "%s"

    def _where(self, lo: list[Any] | None, hi: list[Any] | None,
               eq: list[Any] | None = None) -> tuple[str, list[Any]]:
        parts, args = key_bounds(self.key, lo, hi, self.ph)
        if eq is not None:
            parts.append(f"({', '.join(quote_name(c) for c in self.key)}) = "
                         f"({', '.join([self.ph] * len(self.key))})")
            args += eq
        for c in self.filter:
            col = quote_name(c.column)
            if c.op == "is_null":
                parts.append(f"{col} IS NULL")
            elif c.op == "not_null":
                parts.append(f"{col} IS NOT NULL")
            elif c.op in ("in", "not_in"):
                parts.append(f"{col} {'NOT ' if c.op == 'not_in' else ''}IN ({', '.join([self.ph] * len(c.value))})")
                args += list(c.value)
            else:
                sym = {"eq": "=", "ne": "<>", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}[c.op]
                parts.append(f"{col} {sym} {self.ph}")
                args.append(c.value)
        return (" WHERE " + " AND ".join(parts)) if parts else "", args

    def _rowtext_sql(self) -> str:
        exprs = []
        for col, cat, conv in self.cols:
            e = quote_name(col)
            if conv:
                e = convert.CONVERTERS[conv].pg_sql.format(c=e)
            exprs.append(f"coalesce({_pg_canon(e, cat)}, '\\N')")
        return "concat_ws('|', " + ", ".join(exprs) + ")"

    def _exec(self, sql: str, args: list[Any]) -> list[Any]:
        cur = self.conn.cursor()
        cur.execute(sql, args)
        rows = cur.fetchall()
        cur.close()
        return rows

    def boundaries(self, chunk: int) -> list[list[Any]]:
        k = ", ".join(quote_name(c) for c in self.key)
        where, args = self._where(None, None)
        sql = (f"SELECT {k} FROM (SELECT {k}, row_number() OVER (ORDER BY {k}) AS rn__ FROM "
               f"{quote_name(self.table)}{where}) s WHERE mod(rn__, {int(chunk)}) = 0 ORDER BY {k}")
        return [list(r) for r in self._exec(sql, args)]

    def summary(self, lo: list[Any] | None, hi: list[Any] | None) -> tuple[int, int]:
        where, args = self._where(lo, hi)
        if self.pg:
            sql = (f"SELECT count(*), coalesce(sum(('x' || substr(md5({self._rowtext_sql()}), 1, 15))"
                   f"::bit(60)::bigint), 0) FROM {quote_name(self.table)}{where}")
            n, s = self._exec(sql, args)[0]
            return int(n), int(s)
        rows = self.rows(lo, hi)
        return len(rows), sum(int(h[:15], 16) for h in rows.values())

    def rows(self, lo: list[Any] | None, hi: list[Any] | None,
             eq: list[Any] | None = None) -> dict[tuple[Any, ...], str]:
        """key -> md5 of the canonical row text, for rows in (lo, hi] (or with key = eq)."""
        where, args = self._where(lo, hi, eq)
        k = ", ".join(quote_name(c) for c in self.key)
        if self.pg:
            sql = f"SELECT {k}, md5({self._rowtext_sql()}) FROM {quote_name(self.table)}{where}"
            return {tuple(r[:-1]): r[-1] for r in self._exec(sql, args)}
        cols = ", ".join(quote_name(c) for c, _, _ in self.cols)
        out = {}
        for r in self._exec(f"SELECT {k}, {cols} FROM {quote_name(self.table)}{where}", args):
            vals = r[len(self.key):]
            text = "|".join(canon(convert.apply(conv, v), cat)
                            for v, (_c, cat, conv) in zip(vals, self.cols, strict=True))
            out[tuple(r[:len(self.key)])] = hashlib.md5(text.encode()).hexdigest()
        return out


def _norm_key(k: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(int(v) if isinstance(v, (Decimal, float)) and v == int(v) else v for v in k)


def verify_table(src_conn: Any, tgt_conn: Any, tm: TableMapping, *, both_pg: bool,
                 chunk: int = 10_000) -> TableDiff:
    key_src = list(tm.key)
    key_tgt = list(tm.target_key)
    src_cols, tgt_cols = [], []
    for s, t, conv in tm.columns:
        cat = _category(tm, t, None if both_pg or conv else s)
        src_cols.append((s, cat, conv))
        tgt_cols.append((t, cat, None))
    src = _Side(src_conn, tm.source, key_src, src_cols, tm.spec.filter, tm, both_pg)
    tgt = _Side(tgt_conn, tm.target, key_tgt, tgt_cols, (), None, both_pg)
    diff = TableDiff(table=tm.source, target=tm.target)
    bounds = src.boundaries(chunk)
    ranges = list(zip([None, *bounds], [*bounds, None], strict=True))
    for lo, hi in ranges:
        _compare(src, tgt, lo, hi, diff, depth=0)
    return diff


def _compare(src: _Side, tgt: _Side, lo: list[Any] | None, hi: list[Any] | None,
             diff: TableDiff, depth: int) -> None:
    n_s, sum_s = src.summary(lo, hi)
    n_t, sum_t = tgt.summary(lo, hi)
    if depth == 0:
        diff.source_rows += n_s
    if n_s == n_t and sum_s == sum_t:
        return
    if max(n_s, n_t) > ROW_LEVEL and depth < 40:
        mid = _middle(src, lo, hi, n_s) or _middle(tgt, lo, hi, n_t)
        if mid is not None:
            _compare(src, tgt, lo, mid, diff, depth + 1)
            _compare(src, tgt, mid, hi, diff, depth + 1)
            return
    a = {_norm_key(k): h for k, h in src.rows(lo, hi).items()}
    b = {_norm_key(k): h for k, h in tgt.rows(lo, hi).items()}
    diff.missing += [list(k) for k in a if k not in b]
    diff.extra += [list(k) for k in b if k not in a]
    diff.different += [list(k) for k, h in a.items() if k in b and b[k] != h]


def _middle(side: _Side, lo: list[Any] | None, hi: list[Any] | None, n: int) -> list[Any] | None:
    if n < 2:
        return None
    where, args = side._where(lo, hi)
    k = ", ".join(quote_name(c) for c in side.key)
    rows = side._exec(f"SELECT {k} FROM {quote_name(side.table)}{where} ORDER BY {k} LIMIT 1 OFFSET {n // 2 - 1}", args)
    if not rows or list(rows[0]) == hi:
        return None
    return list(rows[0])


def recheck(src_conn: Any, tgt_conn: Any, tm: TableMapping, diff: TableDiff, *, both_pg: bool) -> TableDiff:
    """Compare only the keys found differing (after the caller waited out the lag)."""
    fresh = TableDiff(table=diff.table, target=diff.target, source_rows=diff.source_rows)
    for k in diff.missing + diff.extra + diff.different:
        one = verify_table_keys(src_conn, tgt_conn, tm, k, both_pg=both_pg)
        fresh.missing += one.missing
        fresh.extra += one.extra
        fresh.different += one.different
    return fresh


def verify_table_keys(src_conn: Any, tgt_conn: Any, tm: TableMapping, key: list[Any], *,
                      both_pg: bool) -> TableDiff:
    cats = [_category(tm, t, None if both_pg or conv else s) for s, t, conv in tm.columns]
    src_cols = [(s, cat, conv) for (s, _t, conv), cat in zip(tm.columns, cats, strict=True)]
    tgt_cols = [(t, cat, None) for (_s, t, _c), cat in zip(tm.columns, cats, strict=True)]
    src = _Side(src_conn, tm.source, list(tm.key), src_cols, tm.spec.filter, tm, both_pg)
    tgt = _Side(tgt_conn, tm.target, list(tm.target_key), tgt_cols, (), None, both_pg)
    d = TableDiff(table=tm.source, target=tm.target)
    a = {_norm_key(k): h for k, h in src.rows(None, None, key).items()}
    b = {_norm_key(k): h for k, h in tgt.rows(None, None, key).items()}
    d.missing += [list(k) for k in a if k not in b]
    d.extra += [list(k) for k in b if k not in a]
    d.different += [list(k) for k, h in a.items() if k in b and b[k] != h]
    return d


def verify_stream(cfg: StreamConfig, mappings: dict[str, TableMapping], src_conn: Any, tgt_conn: Any,
                  *, tables: list[str] | None = None, chunk: int = 10_000,
                  recheck_wait: float = 1.0, rounds: int = 3) -> list[TableDiff]:
    both_pg = cfg.source_kind == "postgres" and not cfg.target_url.startswith("sqlite")
    if cfg.source_kind == "postgres" and isinstance(src_conn, psycopg2.extensions.connection):
        use_stream_values(src_conn)  # source values as the stream copied them (json as text)
    if both_pg:
        for conn in (src_conn, tgt_conn):
            cur = conn.cursor()
            cur.execute("SET TimeZone = 'UTC'")
            cur.close()
    out = []
    for name, tm in mappings.items():
        if tables and name not in tables:
            continue
        d = verify_table(src_conn, tgt_conn, tm, both_pg=both_pg, chunk=chunk)
        for _ in range(rounds):
            if d.equal:
                break
            # rows within the current lag: wait until the stream has applied what the source
            # had committed when we looked, then look at just those keys again
            _end(src_conn, tgt_conn)
            wait_applied(cfg, src_conn, tgt_conn, timeout=max(5 * recheck_wait, 10.0) if recheck_wait else 0)
            time.sleep(recheck_wait)
            _end(src_conn, tgt_conn)
            d = recheck(src_conn, tgt_conn, tm, d, both_pg=both_pg)
        _end(src_conn, tgt_conn)
        out.append(d)
    return out


def _one(conn: Any, sql: str, args: tuple[Any, ...] = ()) -> Any:
    cur = conn.cursor()
    try:
        cur.execute(sql, args)
        row = cur.fetchone()
        return row[0] if row else None
    finally:
        cur.close()
        conn.rollback()


def wait_applied(cfg: StreamConfig, src_conn: Any, tgt_conn: Any, *, timeout: float) -> bool:
    """Wait (bounded) until the running stream has applied everything the source has now.

    PostgreSQL: the slot's confirmed position passes the WAL insert position (it moves only
    when the target has everything up to it, and follows the server when idle); not
    `pg_current_wal_lsn()`, the write position, which under ``synchronous_commit = off`` is
    still before commits that already returned. SQLite: the
    target's stored position reaches the changelog's last id. False if no stream is running
    or the time is up.
    """
    deadline = time.monotonic() + timeout
    try:
        if cfg.source_kind == "postgres":
            head = _one(src_conn, "SELECT pg_current_wal_insert_lsn()::text")
            while time.monotonic() < deadline:
                if not _one(src_conn, "SELECT active FROM pg_replication_slots WHERE slot_name = %s", (cfg.slot,)):
                    return False
                if _one(src_conn, "SELECT confirmed_flush_lsn >= %s::pg_lsn FROM pg_replication_slots "
                                  "WHERE slot_name = %s", (head, cfg.slot)):
                    return True
                time.sleep(0.1)
            return False
        head = _one(src_conn, *changelog_head_sql(cfg))  # not what it skips (a feeding sink's writes)
        ph = "?" if cfg.target_url.startswith("sqlite") else "%s"
        while head is not None and time.monotonic() < deadline:
            done = _one(tgt_conn, f"SELECT lsn FROM strangler_cdc_position WHERE stream = {ph} "
                                  f"AND source_table = ''", (cfg.name,))
            if done is not None and int(done) >= int(head):
                return True
            time.sleep(0.1)
    except Exception:  # no slot, no changelog, no checkpoints yet: nothing to wait for
        _end(src_conn, tgt_conn)
    return False


def _end(*conns: Any) -> None:
    for c in conns:  # end read transactions so rechecks see fresh data
        c.rollback()
