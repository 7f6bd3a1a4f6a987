"""SQLite (embedded default): trigger changelog -> SQLite target, wide tables, prune, uninstall."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from cdc.config import parse
from cdc.pipeline import Pipeline, open_stream
from cdc.verify import verify_stream

WIDE = 150  # more than json_object's 63-column limit per call


def rows(path: Path, sql: str) -> list[Any]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def run_sql(path: Path, *statements: str) -> None:
    conn = sqlite3.connect(path)
    with conn:
        for s in statements:
            conn.execute(s)
    conn.close()


def test_sqlite_stream_snapshot_changes_wide_table_and_uninstall(tmp_path: Path) -> None:
    src, tgt = tmp_path / "monolith.sqlite3", tmp_path / "catalog.sqlite3"
    cols = ", ".join(f"c{i} TEXT" for i in range(WIDE))
    run_sql(src, "CREATE TABLE catalog_product (id INTEGER PRIMARY KEY, name TEXT NOT NULL, price DECIMAL(10,2))",
            f"CREATE TABLE wide (id INTEGER PRIMARY KEY, {cols})",
            "INSERT INTO catalog_product VALUES (1, 'one', 1.50), (2, 'two', 2.25)")
    run_sql(tgt, "CREATE TABLE products (id INTEGER PRIMARY KEY, title TEXT NOT NULL, "
                 "price_cents INTEGER CHECK (price_cents >= 0))",
            f"CREATE TABLE wide (id INTEGER PRIMARY KEY, {cols})")
    cfg = parse({"streams": {"lite": {
        "source": {"url": f"sqlite:///{src}"}, "target": {"url": f"sqlite:///{tgt}"},
        "tables": {"catalog_product": {"target": "products", "columns": {
            "id": "id", "name": "title", "price": {"to": "price_cents", "convert": "decimal_to_cents"}}},
            "wide": "wide"}}}}).stream("lite")
    pipe = Pipeline(cfg, on_tick=lambda m: None)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            pipe.run()
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    th = threading.Thread(target=run)
    th.start()
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and rows(tgt, "SELECT count(*) FROM products") != [(2,)]:
            time.sleep(0.1)
        values = ", ".join(f"'v{i}'" for i in range(WIDE))
        run_sql(src, "INSERT INTO catalog_product VALUES (3, 'three', 3.99)",
                "UPDATE catalog_product SET name = 'uno' WHERE id = 1",
                "DELETE FROM catalog_product WHERE id = 2",
                "INSERT INTO catalog_product VALUES (4, 'poison', -1)",  # target CHECK refuses it
                "INSERT INTO catalog_product VALUES (5, 'renumbered', 5)",
                "UPDATE catalog_product SET id = 6 WHERE id = 5",  # a key change: 5 goes, 6 comes
                f"INSERT INTO wide VALUES (1, {values})",
                "UPDATE wide SET c149 = 'last', c0 = NULL WHERE id = 1")
        want_products = [(1, "uno", 150), (3, "three", 399), (6, "renumbered", 500)]
        while time.monotonic() < deadline and (
                rows(tgt, "SELECT * FROM products ORDER BY id") != want_products
                or rows(tgt, "SELECT c0, c1, c149 FROM wide") != [(None, "v1", "last")]):
            time.sleep(0.1)
    finally:
        pipe.stop()
        th.join(30)
    assert not errors, errors
    assert rows(tgt, "SELECT * FROM products ORDER BY id") == [(1, "uno", 150), (3, "three", 399),
                                                              (6, "renumbered", 500)]
    dead = rows(tgt, "SELECT source_table, op, reason FROM strangler_cdc_dead_letter")
    assert len(dead) == 1 and dead[0][:2] == ("catalog_product", "c") and "CHECK" in dead[0][2]
    assert rows(tgt, "SELECT c0, c1, c149 FROM wide") == [(None, "v1", "last")]
    # verify agrees, and catches a difference
    source, engine, mappings = open_stream(cfg)
    source.close()
    engine.dispose()
    s, t = sqlite3.connect(src), sqlite3.connect(tgt)
    diffs = {d.table: d for d in verify_stream(cfg, mappings, s, t, recheck_wait=0)}
    assert diffs["wide"].equal and diffs["catalog_product"].missing == [[4]]  # the dead letter
    s.execute("DELETE FROM catalog_product WHERE id = 4")  # fix at the source (stream stopped)
    s.commit()
    assert all(d.equal for d in verify_stream(cfg, mappings, s, t, recheck_wait=0))
    t.execute("UPDATE products SET price_cents = 1 WHERE id = 3")
    t.commit()
    diffs = {d.table: d for d in verify_stream(cfg, mappings, s, t, recheck_wait=0)}
    assert diffs["catalog_product"].different == [[3]]
    s.close()
    t.close()
    # acknowledged entries are pruned; uninstall removes the triggers
    assert rows(src, "SELECT count(*) FROM strangler_cdc_changelog") == [(1,)]  # only the fix-up delete
    from cdc.sources.sqlite import SQLiteSource

    lite = SQLiteSource(cfg, ["catalog_product", "wide"])
    lite.drop()
    lite.close()
    assert rows(src, "SELECT count(*) FROM sqlite_master WHERE type = 'trigger'") == [(0,)]


def test_sqlite_schema_change_stops_the_stream(tmp_path: Path) -> None:
    from cdc.errors import SchemaChanged

    src, tgt = tmp_path / "m.sqlite3", tmp_path / "c.sqlite3"
    run_sql(src, "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)", "INSERT INTO t VALUES (1, 'a')")
    run_sql(tgt, "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)")
    cfg = parse({"streams": {"lite": {"source": {"url": f"sqlite:///{src}"},
                                      "target": {"url": f"sqlite:///{tgt}"}, "tables": {"t": "t"}}}}).stream("lite")
    pipe = Pipeline(cfg, on_tick=lambda m: None)
    polls = [0]

    def until() -> bool:
        polls[0] += 1
        if polls[0] == 3:
            run_sql(src, "ALTER TABLE t ADD COLUMN color TEXT", "INSERT INTO t VALUES (2, 'b', 'red')")
        return polls[0] > 200

    try:
        pipe.run(until=until)
        raise AssertionError("the stream should have stopped")
    except SchemaChanged as exc:
        assert "new column 'color'" in str(exc)
    assert rows(tgt, "SELECT * FROM t") == [(1, "a")]  # the row after the change waits


def test_a_sqlite_transaction_is_never_visible_half_applied(tmp_path: Path, monkeypatch: Any) -> None:
    """Batches smaller than a source transaction: the target commits only at its end."""
    from cdc.sinks.sqlalchemy import SqlSink

    src, tgt = tmp_path / "m.sqlite3", tmp_path / "c.sqlite3"
    run_sql(src, "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)", "INSERT INTO t VALUES (0, 'seed')")
    run_sql(tgt, "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)")
    cfg = parse({"streams": {"lite": {"source": {"url": f"sqlite:///{src}"}, "target": {"url": f"sqlite:///{tgt}"},
                                      "batch_size": 10, "tables": {"t": "t"}}}}).stream("lite")
    seen: list[int] = []  # target row count after each target commit, read by another connection
    real_commit = SqlSink.commit

    def commit(self: SqlSink, resume: Any = None) -> Any:
        pos = real_commit(self, resume)
        seen.append(rows(tgt, "SELECT count(*) FROM t")[0][0])
        return pos

    monkeypatch.setattr(SqlSink, "commit", commit)
    pipe = Pipeline(cfg, on_tick=lambda m: None)
    th = threading.Thread(target=pipe.run)
    th.start()
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and rows(tgt, "SELECT count(*) FROM t") != [(1,)]:
            time.sleep(0.05)
        for first in (1, 26):  # two transactions of 25 rows each, read 10 at a time
            run_sql(src, *(f"INSERT INTO t VALUES ({i}, 'r{i}')" for i in range(first, first + 25)))
        while time.monotonic() < deadline and rows(tgt, "SELECT count(*) FROM t") != [(51,)]:
            time.sleep(0.05)
    finally:
        pipe.stop()
        th.join(30)
    assert rows(tgt, "SELECT count(*) FROM t") == [(51,)]
    assert set(seen) <= {1, 26, 51}, seen  # never 11 or 21: no half transaction was ever visible


def test_verify_compares_a_timestamp_kept_as_text_as_a_timestamp(tmp_path: Path) -> None:
    """The catalog keeps ISO text; the monolith a datetime column the reverse sink writes with
    microseconds: `…09` and `…09.000000` are one instant, `…10` is another."""
    src, tgt = tmp_path / "src.sqlite3", tmp_path / "tgt.sqlite3"
    run_sql(src, "CREATE TABLE items (id INTEGER PRIMARY KEY, at datetime NOT NULL)",
            "INSERT INTO items VALUES (1, '2023-05-18 16:24:09.000000'), (2, '2023-05-18 16:24:09.000000')")
    run_sql(tgt, "CREATE TABLE items (id INTEGER PRIMARY KEY, at VARCHAR(32) NOT NULL)",
            "INSERT INTO items VALUES (1, '2023-05-18 16:24:09'), (2, '2023-05-18 16:24:10')")
    cfg = parse({"streams": {"lite": {"source": {"url": f"sqlite:///{src}"},
                                      "target": {"url": f"sqlite:///{tgt}"}, "tables": {"items": {}}}}}).stream("lite")
    source, engine, mappings = open_stream(cfg)
    source.close()
    engine.dispose()
    s, t = sqlite3.connect(src), sqlite3.connect(tgt)
    (diff,) = verify_stream(cfg, mappings, s, t, recheck_wait=0)
    s.close()
    t.close()
    assert diff.different == [[2]] and not diff.missing and not diff.extra


def test_an_idle_stream_after_its_copy_reports_no_lag(tmp_path: Path) -> None:
    """Copied rows carry the time they were read, not a commit time, and a copy's positions
    are never durable where the stream's are: counted as pending, they made a fresh, idle
    stream's lag grow by a second a second until its first change (the read gate of `shift`
    and `own`'s preflight then refused it)."""
    src, tgt = tmp_path / "monolith.sqlite3", tmp_path / "catalog.sqlite3"
    run_sql(src, "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)", "INSERT INTO t VALUES (1, 'a'), (2, 'b')")
    run_sql(tgt, "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)")
    cfg = parse({"streams": {"idle": {"source": {"url": f"sqlite:///{src}"}, "target": {"url": f"sqlite:///{tgt}"},
                                       "tables": {"t": "t"}}}}).stream("idle")
    ticks: list[tuple[str, float]] = []
    pipe = Pipeline(cfg, on_tick=lambda m: ticks.append((m.state, m.lag_ms)))
    th = threading.Thread(target=pipe.run, daemon=True)
    th.start()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and rows(tgt, "SELECT count(*) FROM t") != [(2,)]:
            time.sleep(0.05)
        copied = len(ticks)
        while time.monotonic() < deadline and len([s for s, _ in ticks[copied:] if s == "streaming"]) < 3:
            time.sleep(0.05)  # ticks come once a second: three of them, a second or more apart
        idle = [lag for state, lag in ticks[copied:] if state == "streaming"]
        assert len(idle) >= 3 and idle == [0.0] * len(idle), ticks
    finally:
        pipe.stop()
        th.join(30)
