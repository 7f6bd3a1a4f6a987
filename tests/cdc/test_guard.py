"""cdc/guard.py: the non-owner side's database refuses application writes; the sink passes.

SQLite (the embedded default) and real PostgreSQL, on the shop's own ownership group: the
monolith side is guarded once the catalog owns the group, except catalog_product.stock_count,
which the monolith keeps.
"""

from __future__ import annotations

import sqlite3
import threading
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import psycopg2
import pytest

import ownership
from cdc.guard import apply_guards, guard_state, remove_guards
from tests.cdc.conftest import sql

REPO = Path(__file__).resolve().parents[2]
MONOLITH_DDL = [
    "CREATE TABLE catalog_category (id INTEGER PRIMARY KEY, name TEXT NOT NULL)",
    "CREATE TABLE catalog_product (id INTEGER PRIMARY KEY, name TEXT NOT NULL, price NUMERIC, "
    "stock_count INTEGER NOT NULL DEFAULT 0)",
    "CREATE TABLE catalog_pricehistory (id INTEGER PRIMARY KEY, product_id INTEGER)",
    "INSERT INTO catalog_category VALUES (1, 'c')",
    "INSERT INTO catalog_product VALUES (1, 'one', 1.5, 10)",
]


def shop_group(owner: str) -> ownership.Group:
    g = ownership.load(REPO / "ownership.yaml").group("catalog")
    return replace(g, owner=owner)


def lite(path: Path, *statements: str, marker: bool = False) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN")
        if marker:  # what the CDC sink does inside each of its transactions
            conn.execute("INSERT INTO strangler_cdc_origin VALUES ('catalog_reverse')")
        for s in statements:
            conn.execute(s)
        if marker:
            conn.execute("DELETE FROM strangler_cdc_origin")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    finally:
        conn.close()


def refused(run: Any, *args: Any, **kw: Any) -> str:
    try:
        run(*args, **kw)
    except (sqlite3.Error, psycopg2.Error) as exc:
        return str(exc)
    raise AssertionError("the write was accepted")


def test_sqlite_guard_refuses_application_writes_and_passes_the_sink(tmp_path: Path) -> None:
    db = tmp_path / "monolith.sqlite3"
    lite(db, *MONOLITH_DDL)
    url = f"sqlite:///{db}"
    group = shop_group("catalog")
    assert guard_state(url, group, "monolith") == dict.fromkeys(group.side("monolith").tables, "open")
    done = apply_guards(url, group, "monolith")
    assert done == dict.fromkeys(group.side("monolith").tables, "installed")
    assert apply_guards(url, group, "monolith") == dict.fromkeys(done, "unchanged")  # idempotent
    assert guard_state(url, group, "monolith")["catalog_product"] == "guarded (keeps stock_count)"
    assert guard_state(url, group, "monolith")["catalog_category"] == "guarded"

    msg = refused(lite, db, "UPDATE catalog_product SET name = 'x' WHERE id = 1")
    assert "catalog_product is written by catalog now (ownership group catalog)" in msg
    assert "strangler own catalog --by monolith --reason" in msg
    for stmt in ("INSERT INTO catalog_product VALUES (2, 'two', 2, 0)",
                 "DELETE FROM catalog_product", "INSERT INTO catalog_category VALUES (2, 'd')",
                 "UPDATE catalog_product SET stock_count = 1, price = 9 WHERE id = 1"):
        assert "is written by catalog now" in refused(lite, db, stmt), stmt
    # the kept column stays writable on the non-owner side
    lite(db, "UPDATE catalog_product SET stock_count = stock_count - 1 WHERE id = 1")
    # the sink (its marker row inside its transaction) passes
    lite(db, "INSERT INTO catalog_product VALUES (2, 'two', 2, 0)",
         "UPDATE catalog_product SET name = 'uno' WHERE id = 1",
         "DELETE FROM catalog_category WHERE id = 1", marker=True)
    rows = sqlite3.connect(db).execute("SELECT id, name, stock_count FROM catalog_product ORDER BY id").fetchall()
    assert rows == [(1, "uno", 9), (2, "two", 0)]

    # the owner side is never guarded; giving ownership back removes the guards
    assert apply_guards(url, shop_group("monolith"), "monolith") == dict.fromkeys(done, "removed")
    lite(db, "UPDATE catalog_product SET name = 'one' WHERE id = 1")
    apply_guards(url, group, "monolith")
    assert remove_guards(url, list(done)) == dict.fromkeys(done, "removed")
    lite(db, "DELETE FROM catalog_product WHERE id = 2")


@pytest.mark.postgres
def test_postgres_guard_refuses_application_writes_and_passes_the_sink(pg_server: Any) -> None:
    dsn = pg_server.create_database(f"guard_{uuid.uuid4().hex[:8]}")
    for stmt in MONOLITH_DDL:
        sql(dsn, stmt)
    group = shop_group("catalog")
    assert set(apply_guards(dsn, group, "monolith").values()) == {"installed"}
    assert set(apply_guards(dsn, group, "monolith").values()) == {"unchanged"}
    assert guard_state(dsn, group, "monolith")["catalog_product"] == "guarded (keeps stock_count)"
    # an application role, not a superuser: it gets the guard's message, not "permission denied"
    role = f"app_{uuid.uuid4().hex[:8]}"
    sql(dsn, f"CREATE ROLE {role} LOGIN")
    sql(dsn, f"GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}")
    app_dsn = dsn.replace("://", f"://{role}@", 1) if "@" not in dsn else dsn.split("://")[0] + "://" + role + "@" + dsn.split("@", 1)[1]

    def app(stmt: str) -> None:
        sql(app_dsn, stmt)

    for stmt in ("UPDATE catalog_product SET name = 'x' WHERE id = 1",
                 "INSERT INTO catalog_product VALUES (2, 'two', 2, 0)",
                 "DELETE FROM catalog_category", "TRUNCATE catalog_pricehistory",
                 "UPDATE catalog_product SET stock_count = 1, price = 9 WHERE id = 1"):
        msg = refused(app, stmt)
        assert "is written by catalog now (ownership group catalog)" in msg, (stmt, msg)
        assert "strangler own catalog --by monolith" in msg
    app("UPDATE catalog_product SET stock_count = stock_count - 1 WHERE id = 1")  # kept column
    # a session with a replication origin set up (the sink's) passes
    conn = psycopg2.connect(dsn)
    with conn, conn.cursor() as cur:
        cur.execute("SELECT pg_replication_origin_create('strangler_test_guard')")
        cur.execute("SELECT pg_replication_origin_session_setup('strangler_test_guard')")
        cur.execute("INSERT INTO catalog_product VALUES (2, 'two', 2, 0)")
        cur.execute("UPDATE catalog_product SET name = 'uno' WHERE id = 1")
        cur.execute("TRUNCATE catalog_pricehistory")
        cur.execute("SELECT pg_replication_origin_session_reset()")
        cur.execute("SELECT pg_replication_origin_drop('strangler_test_guard')")
    conn.close()
    assert sql(dsn, "SELECT id, name, stock_count FROM catalog_product ORDER BY id") == [
        (1, "uno", 9), (2, "two", 0)]
    assert set(apply_guards(dsn, shop_group("monolith"), "monolith").values()) == {"removed"}
    app("UPDATE catalog_product SET name = 'one' WHERE id = 1")


@pytest.mark.postgres
def test_postgres_guards_change_while_a_reader_holds_every_table(pg_server: Any) -> None:
    """A customer's read never waits for a flip (nor dead-locks with one, which failed a read
    with a 500): guards are installed, lifted and put back while a reader's open transaction
    holds all the guarded tables, and each change is in force once it returns."""
    dsn = pg_server.create_database(f"guard_{uuid.uuid4().hex[:8]}")
    for stmt in MONOLITH_DDL:
        sql(dsn, stmt)
    reader = psycopg2.connect(dsn)
    try:
        with reader.cursor() as cur:  # ACCESS SHARE on all three, held until the rollback
            cur.execute("SELECT count(*) FROM catalog_category, catalog_product, catalog_pricehistory")
        for owner, expected in (("catalog", "installed"), ("monolith", "removed"), ("catalog", "installed")):
            outcome: list[Any] = []
            worker = threading.Thread(target=lambda o=owner, out=outcome: out.append(
                apply_guards(dsn, shop_group(o), "monolith")), daemon=True)
            worker.start()
            worker.join(timeout=30)
            assert outcome, f"changing the guards (owner {owner}) waited for a reader"
            assert set(outcome[0].values()) == {expected}, outcome
            write = f"UPDATE catalog_product SET name = 'by {owner}' WHERE id = 1"
            if owner == "catalog":
                assert "is written by catalog now" in refused(sql, dsn, write)
            else:
                sql(dsn, write)
        assert guard_state(dsn, shop_group("catalog"), "monolith")["catalog_product"] == "guarded (keeps stock_count)"
    finally:
        reader.rollback()
        reader.close()


def test_a_missing_sqlite_database_is_refused_not_created(tmp_path: Path) -> None:
    from cdc.guard import GuardError

    group = shop_group("monolith")
    with pytest.raises(GuardError, match="does not exist; create its schema first"):
        apply_guards(f"sqlite:///{tmp_path / 'nope.sqlite3'}", group, "catalog")
    assert not (tmp_path / "nope.sqlite3").exists()
