"""The issue-14 workload of the CDC benchmarks (benchmarks/cdc.py and its peers).

A 9-column product table in the monolith's shape (``catalog_product``: numeric price) and
in the catalog service's (``products``: the price in cents, as streams.yaml maps it). Every
row is a function of its key, so each peer moves the same rows and `check` can prove on the
target that all of them arrived, converted: a run that lost or mangled a row fails instead
of flattering the peer. Producers commit with ``synchronous_commit = on`` (as in
production; the throwaway server's default is off, where decoding waits for the WAL
writer); `wait_visible` polls the target for the last key, which both peers apply last.
"""

from __future__ import annotations

import time
from typing import Any

import psycopg2

MONOLITH = "catalog_product"  # the source of the forward stream (and of the native peer)
SERVICE = "products"  # its target: price_cents bigint

_COLUMNS = ("id bigint PRIMARY KEY, name text NOT NULL, description text NOT NULL, category_id int, "
            "{price}, stock_count int NOT NULL DEFAULT 0, is_active boolean NOT NULL, "
            "created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL{extra}")
MONOLITH_DDL = f"CREATE TABLE {MONOLITH} ({_COLUMNS.format(price='price numeric(10,2) NOT NULL', extra='')})"
SERVICE_DDL = f"CREATE TABLE {SERVICE} ({_COLUMNS.format(price='price_cents bigint NOT NULL', extra='')})"
# the service's table as the way back reads it: with its generated slug (not written back)
SERVICE_SLUG_DDL = f"CREATE TABLE {SERVICE} ({_COLUMNS.format(price='price_cents bigint NOT NULL', extra=', slug text')})"
SERVICE_COLUMNS = ("id", "name", "description", "category_id", "price_cents", "stock_count",
                   "is_active", "created_at", "updated_at")

# Row g (an integer expression) in the monolith's column order; {price} is the price column.
_ROW = ("g, 'product ' || g, rpad('description of product ' || g || ': ', 120, 'lorem ipsum dolor '), "
        "g % 40 + 1, {price}, g % 500, g % 7 <> 0, "
        "timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second', "
        "timestamptz '2024-06-01 00:00:00+00' + g * interval '1 second'")
MONOLITH_ROW = _ROW.format(price="(g % 100000) / 100.0")
SERVICE_ROW = _ROW.format(price="g % 100000")
SERVICE_SLUG_ROW = SERVICE_ROW + ", 'product-' || g"
# the monolith's price mapped to cents in SQL: what the COPY peer selects (= decimal_to_cents)
MAPPED_SELECT = (f"SELECT id, name, description, category_id, round(price * 100)::bigint, stock_count, "
                 f"is_active, created_at, updated_at FROM {MONOLITH}")
DESCRIPTION_LEN = 120


def sql(dsn: str, *statements: str) -> list[Any]:
    """Run statements in autocommit; the last one's rows."""
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    out: list[Any] = []
    try:
        with conn.cursor() as cur:
            for s in statements:
                cur.execute(s)
                out = cur.fetchall() if cur.description else []
    finally:
        conn.close()
    return out


def fill(dsn: str, table: str, row: str, lo: int, hi: int) -> None:
    """Rows lo..hi in one transaction (not timed)."""
    sql(dsn, f"INSERT INTO {table} SELECT {row} FROM generate_series({int(lo)}, {int(hi)}) g")


def produce_txn(dsn: str, table: str, row: str, rows: int) -> float:
    """Insert rows 1..rows in ONE transaction; returns the clock just before its commit."""
    conn = psycopg2.connect(dsn)
    try:
        cur = conn.cursor()
        cur.execute("SET synchronous_commit = on")
        cur.execute(f"INSERT INTO {table} SELECT {row} FROM generate_series(1, {int(rows)}) g")
        start = time.perf_counter()
        conn.commit()
    finally:
        conn.close()
    return start


def produce_single_txns(dsn: str, table: str, row: str, rows: int) -> tuple[float, float]:
    """Rows 1..rows, one transaction each, as fast as the server commits them (a procedure
    with COMMIT per row); returns (clock before the first commit, clock after the last)."""
    sql(dsn, f"""CREATE OR REPLACE PROCEDURE bench_one_by_one(lo bigint, hi bigint) LANGUAGE plpgsql AS $$
                 BEGIN FOR g IN lo..hi LOOP INSERT INTO {table} SELECT {row}; COMMIT; END LOOP; END $$""")
    conn = psycopg2.connect(dsn)
    conn.autocommit = True  # CALL may COMMIT only outside a transaction block
    try:
        cur = conn.cursor()
        cur.execute("SET synchronous_commit = on")
        start = time.perf_counter()
        cur.execute("CALL bench_one_by_one(1, %s)", (rows,))
        return start, time.perf_counter()
    finally:
        conn.close()


def wait_visible(dsn: str, table: str, key: int, timeout: float = 600.0, every: float = 0.002) -> float:
    """Poll the target until row `key` is visible there; returns that clock."""
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    deadline = time.monotonic() + timeout
    try:
        cur = conn.cursor()
        while True:
            cur.execute(f"SELECT 1 FROM {table} WHERE id = %s", (key,))
            if cur.fetchone() is not None:
                return time.perf_counter()
            if time.monotonic() > deadline:
                raise TimeoutError(f"row {key} did not reach {table} within {timeout:.0f} s")
            time.sleep(every)
    finally:
        conn.close()


def check(dsn: str, table: str, rows: int, *, cents: bool, what: str) -> None:
    """Every row 1..rows is on the target, its price converted right: count, price sum and
    description lengths against what the generator wrote."""
    price = "sum(price_cents)" if cents else "sum(price * 100)"
    n, total, length, lo, hi = sql(dsn, f"SELECT count(*), {price}, sum(length(description)), min(id), "
                                        f"max(id) FROM {table}")[0]
    want = sum(g % 100000 for g in range(1, rows + 1))
    assert (n, lo, hi) == (rows, 1, rows), f"{what}: {n} rows (keys {lo}..{hi}) on the target, want {rows}"
    assert total == want, f"{what}: price sum {total} (cents) on the target, want {want}"
    assert length == rows * DESCRIPTION_LEN, f"{what}: descriptions total {length} chars, want {rows * DESCRIPTION_LEN}"
