"""Loop-free CDC both ways: a forward stream A -> B and its reverse B -> A running at once.

The guarantee: a change made on either side reaches the other exactly once, nothing bounces
back, and each row ends with the last committed write. Every row a sink *proposes* is logged
by a BEFORE trigger on each side (it fires even where the upsert then leaves an identical
row alone, so an echo cannot hide), with whether the sink's tag (PostgreSQL replication
origin / SQLite marker) was on. Also: per-stream origin skipping in a chain A -> B -> C, and
a sink role that may not use replication origins stops the stream saying what to grant.
"""

from __future__ import annotations

import sqlite3
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest

from cdc.config import StreamConfig, parse
from cdc.errors import SinkError
from cdc.origin import SQLITE_MARKER_DDL
from cdc.pipeline import Pipeline
from tests.cdc.conftest import Env, sql, wait_for
from tests.cdc.test_stream_features import running

Run = Callable[[str], list[tuple[Any, ...]]]

A_TABLE = "CREATE TABLE catalog_item (id integer PRIMARY KEY, name text NOT NULL, price numeric(10, 2) NOT NULL, version integer NOT NULL)"
B_TABLE = "CREATE TABLE items (id integer PRIMARY KEY, title text NOT NULL, price_cents bigint NOT NULL, version integer NOT NULL)"
PROPOSED = "CREATE TABLE proposed (tbl text, id integer, version integer, op text, sink integer)"

PG_LOG = """
CREATE FUNCTION log_proposed() RETURNS trigger AS $$
DECLARE r record;
BEGIN
  IF TG_OP = 'DELETE' THEN r := OLD; ELSE r := NEW; END IF;
  INSERT INTO proposed VALUES (TG_TABLE_NAME, r.id, r.version, TG_OP,
                               pg_replication_origin_session_is_setup()::int);
  RETURN r;
END $$ LANGUAGE plpgsql SECURITY DEFINER;  -- a non-superuser sink may not call the origin function
CREATE TRIGGER log_proposed BEFORE INSERT OR UPDATE OR DELETE ON {t}
    FOR EACH ROW EXECUTE FUNCTION log_proposed();
ALTER TABLE {t} ENABLE ALWAYS TRIGGER log_proposed;
"""


def sqlite_log(table: str) -> list[str]:
    sink = "EXISTS (SELECT 1 FROM strangler_cdc_origin)"
    return [f"CREATE TRIGGER log_proposed_{op[0]} BEFORE {op} ON {table} BEGIN INSERT INTO proposed "
            f"VALUES ('{table}', {ref}.id, {ref}.version, '{op}', {sink}); END"
            for op, ref in (("INSERT", "NEW"), ("UPDATE", "NEW"), ("DELETE", "OLD"))]


def pair_spec(a: str, b: str, *, fwd: str = "fwd", rev: str = "rev", **extra: Any) -> dict[str, Any]:
    """streams.yaml with the forward stream A -> B and its reverse B -> A (no copy back)."""
    return {"version": 1, "streams": {
        fwd: {"source": {"url": a}, "target": {"url": b}, **extra,
              "tables": {"catalog_item": {"target": "items", "columns": {
                  "id": "id", "name": "title", "price": {"to": "price_cents", "convert": "decimal_to_cents"},
                  "version": "version"}}}},
        rev: {"source": {"url": b}, "target": {"url": a}, "initial": "none", **extra,
              "tables": {"items": {"target": "catalog_item", "columns": {
                  "id": "id", "title": "name", "price_cents": {"to": "price", "convert": "cents_to_decimal"},
                  "version": "version"}}}},
    }}


def rows_a(a: Run) -> list[tuple[Any, ...]]:
    return [tuple(int(v) for v in (r[0], r[1], r[2])) + (str(r[3]),)
            for r in a("SELECT id, version, round(price * 100), name FROM catalog_item ORDER BY id")]


def rows_b(b: Run) -> list[tuple[Any, ...]]:
    return [(int(r[0]), int(r[1]), int(r[2]), str(r[3]))
            for r in b("SELECT id, version, price_cents, title FROM items ORDER BY id")]


def version(run: Run, table: str, id_: int) -> int | None:
    got = run(f"SELECT version FROM {table} WHERE id = {id_}")
    return int(got[0][0]) if got else None


def sink_proposals(run: Run) -> Counter[tuple[int, int, str]]:
    """What the sink proposed to this side, per (id, version, put|del). An upsert proposes
    through INSERT (an UPDATE row trigger may follow it: not counted twice)."""
    return Counter((int(i), int(v), "del" if op == "DELETE" else "put")
                   for i, v, op, sink in run("SELECT id, version, op, sink FROM proposed")
                   if int(sink) and op != "UPDATE")


def exchange(a: Run, b: Run) -> None:
    """Writes on both sides while both streams run, then the checks of the guarantee.

    `a` holds catalog_item (rows 1..4, version 1, written before the streams started), `b`
    items; the forward stream copies A and the reverse starts empty-handed (initial: none).
    """
    wait_for(lambda: len(rows_b(b)) == 4, 60, "the forward copy")
    # different rows, both sides at once
    a("UPDATE catalog_item SET name = 'a1', version = 2 WHERE id = 1")
    b("UPDATE items SET title = 'b2', price_cents = 1234, version = 3 WHERE id = 2")
    b("INSERT INTO items (id, title, price_cents, version) VALUES (10, 'b10', 1000, 4)")
    a("DELETE FROM catalog_item WHERE id = 4")
    wait_for(lambda: version(a, "catalog_item", 2) == 3 and version(a, "catalog_item", 10) == 4
             and version(b, "items", 1) == 2 and version(b, "items", 4) is None, 60,
             "each side's writes to reach the other")
    # the same row, in turn on each side
    a("UPDATE catalog_item SET price = 5.55, version = 5 WHERE id = 3")
    wait_for(lambda: version(b, "items", 3) == 5, 60, "A's write of row 3 in B")
    b("UPDATE items SET title = 'b3', version = 6 WHERE id = 3")
    wait_for(lambda: version(a, "catalog_item", 3) == 6, 60, "B's write of row 3 in A")
    a("UPDATE catalog_item SET name = 'a3', version = 7 WHERE id = 3")
    wait_for(lambda: version(b, "items", 3) == 7, 60, "A's second write of row 3 in B")
    # Markers: each stream applies in commit order, so once A's marker is in B every echo
    # of B's writes (back into B through A) would be too, and once B's later marker is in A,
    # every echo of A's writes would be in A.
    a("INSERT INTO catalog_item (id, name, price, version) VALUES (100, 'marker', 1, 100)")
    wait_for(lambda: version(b, "items", 100) == 100, 60, "A's marker in B")
    b("INSERT INTO items (id, title, price_cents, version) VALUES (200, 'marker', 1, 200)")
    wait_for(lambda: version(a, "catalog_item", 200) == 200, 60, "B's marker in A")

    final = [(1, 2, 100, "a1"), (2, 3, 1234, "b2"), (3, 7, 555, "a3"), (10, 4, 1000, "b10"),
             (100, 100, 100, "marker"), (200, 200, 1, "marker")]
    assert rows_a(a) == final  # the last committed write of each row, on both sides
    assert rows_b(b) == final
    # B got A's rows and writes once each (copy, then stream); nothing of its own came back
    assert sink_proposals(b) == Counter({(1, 1, "put"): 1, (2, 1, "put"): 1, (3, 1, "put"): 1, (4, 1, "put"): 1,
                                         (1, 2, "put"): 1, (4, 1, "del"): 1, (3, 5, "put"): 1,
                                         (3, 7, "put"): 1, (100, 100, "put"): 1})
    # A got B's writes once each; none of A's own writes bounced back
    assert sink_proposals(a) == Counter({(2, 3, "put"): 1, (10, 4, "put"): 1, (3, 6, "put"): 1,
                                         (200, 200, "put"): 1})


def seed(a: Run) -> None:
    a("INSERT INTO catalog_item (id, name, price, version) VALUES "
      "(1, 'p1', 1.00, 1), (2, 'p2', 2.00, 1), (3, 'p3', 3.00, 1), (4, 'p4', 4.00, 1)")


@contextmanager
def both_running(streams: dict[str, StreamConfig]) -> Iterator[None]:
    with ExitStack() as stack:
        for cfg in streams.values():
            stack.enter_context(running(cfg))
        yield


# --- SQLite (the embedded default), direct ----------------------------------------------

def sqlite_runner(path: Path) -> Run:
    def run(statement: str) -> list[tuple[Any, ...]]:
        conn = sqlite3.connect(path, timeout=30, isolation_level=None)
        try:
            return conn.execute(statement).fetchall()
        finally:
            conn.close()
    return run


def test_sqlite_both_directions_exactly_once_and_no_echo(tmp_path: Path) -> None:
    pa, pb = tmp_path / "a.sqlite3", tmp_path / "b.sqlite3"
    a, b = sqlite_runner(pa), sqlite_runner(pb)
    for run, table, ddl in ((a, "catalog_item", A_TABLE), (b, "items", B_TABLE)):
        for stmt in (ddl, PROPOSED, SQLITE_MARKER_DDL, *sqlite_log(table)):
            run(stmt)
    seed(a)
    streams = parse(pair_spec(f"sqlite:///{pa}", f"sqlite:///{pb}")).streams
    assert (streams["fwd"].skip_origins, streams["rev"].skip_origins) == (("rev",), ("fwd",))
    with both_running(streams):
        exchange(a, b)


def test_sqlite_changelog_gains_the_origin_column(tmp_path: Path) -> None:
    """A changelog from before origins existed is extended, not recreated."""
    from cdc.sources.sqlite import SQLiteSource

    path = tmp_path / "a.sqlite3"
    run = sqlite_runner(path)
    run(A_TABLE)
    run("CREATE TABLE strangler_cdc_changelog (id INTEGER PRIMARY KEY AUTOINCREMENT, stream TEXT NOT NULL, "
        "tbl TEXT NOT NULL, op TEXT NOT NULL, old TEXT, new TEXT, ts_ms INTEGER)")
    cfg = parse(pair_spec(f"sqlite:///{path}", f"sqlite:///{tmp_path / 'b.sqlite3'}")).stream("fwd")
    src = SQLiteSource(cfg, ["catalog_item"])
    try:
        src.install()
        seed(run)
        assert run("SELECT origin FROM strangler_cdc_changelog") == [(None,)] * 4
    finally:
        src.close()


# --- PostgreSQL, direct -------------------------------------------------------------------

def pg_runner(dsn: str) -> Run:
    return lambda statement: sql(dsn, statement)


def pg_pair(env: Env) -> tuple[Run, Run]:
    a, b = pg_runner(env.src), pg_runner(env.tgt)
    for run, table, ddl in ((a, "catalog_item", A_TABLE), (b, "items", B_TABLE)):
        run(ddl)
        run(PROPOSED)
        run(PG_LOG.format(t=table))
    seed(a)
    return a, b


@pytest.mark.postgres
@pytest.mark.slow
def test_postgres_both_directions_exactly_once_and_no_echo(cdc_env: Env) -> None:
    a, b = pg_pair(cdc_env)
    with both_running(parse(pair_spec(cdc_env.src, cdc_env.tgt)).streams):
        exchange(a, b)


@pytest.mark.postgres
@pytest.mark.slow
def test_chain_carries_changes_through_the_middle_database(cdc_env: Env, pg_server: Any) -> None:
    """A -> B (ab) and B -> C (bc): B's source skips only its reverse's origin, not ab's."""
    c_dsn = pg_server.create_database(f"c_{uuid.uuid4().hex[:8]}")
    a, b, c = pg_runner(cdc_env.src), pg_runner(cdc_env.tgt), pg_runner(c_dsn)
    a(A_TABLE)
    b(B_TABLE)
    c(B_TABLE)
    spec = pair_spec(cdc_env.src, cdc_env.tgt, fwd="ab")
    del spec["streams"]["rev"]
    spec["streams"]["bc"] = {"source": {"url": cdc_env.tgt}, "target": {"url": c_dsn},
                             "tables": {"items": "items"}}
    streams = parse(spec).streams
    assert streams["bc"].skip_origins == ()
    try:
        with both_running(streams):
            a("INSERT INTO catalog_item (id, name, price, version) VALUES (1, 'from a', 1.5, 1)")
            wait_for(lambda: c("SELECT id, title, price_cents FROM items") == [(1, "from a", 150)], 60,
                     "A's row to reach C through B")
    finally:
        drop_slots(c_dsn, cdc_env.tgt)


def drop_slots(*dsns: str) -> None:
    for dsn in dsns:
        def released(d: str = dsn) -> bool:
            return not any(r[0] for r in sql(
                d, "SELECT active FROM pg_replication_slots WHERE database = current_database()"))
        wait_for(released, 30, "the slots to be released")
        sql(dsn, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                 "WHERE database = current_database()")


@pytest.mark.postgres
def test_sink_role_without_origin_privileges_stops_the_stream_with_the_grant(cdc_env: Env) -> None:
    role = f"sinker_{uuid.uuid4().hex[:8]}"
    b = pg_runner(cdc_env.tgt)
    pg_pair(cdc_env)
    b(f"CREATE ROLE {role} LOGIN")
    b(f"GRANT CREATE, USAGE ON SCHEMA public TO {role}")
    b(f"GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}")
    user_dsn = with_user(cdc_env.tgt, role)
    cfg = parse(pair_spec(cdc_env.src, user_dsn)).stream("fwd")
    with pytest.raises(SinkError) as err:  # (bounded: a sink that wrote untagged would end the run)
        Pipeline(cfg, on_tick=lambda m: None).run(until=lambda: version(b, "items", 1) is not None)
    message = str(err.value)
    assert f"role {role!r} may not use replication origins" in message
    assert ("GRANT EXECUTE ON FUNCTION pg_replication_origin_create(text), "
            f'pg_replication_origin_session_setup(text) TO "{role}"') in message
    assert version(b, "items", 1) is None  # nothing written untagged

    b("GRANT EXECUTE ON FUNCTION pg_replication_origin_create(text), "
      f"pg_replication_origin_session_setup(text) TO {role}")
    done = threading.Event()
    pipe = Pipeline(cfg, on_tick=lambda m: done.set() if version(b, "items", 4) == 1 else None)
    pipe.run(until=done.is_set)
    assert len(rows_b(b)) == 4
    assert b("SELECT count(*) FROM proposed WHERE sink = 1") == [(4,)]  # tagged: the origin was set up
    assert b("SELECT roname FROM pg_replication_origin WHERE roname = 'strangler_fwd'") == [("strangler_fwd",)]


def with_user(dsn: str, user: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(dsn)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{user}@{host}"))
