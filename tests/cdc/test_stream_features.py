"""Pitfalls, one at a time, with the pipeline in-process (deterministic, no timing)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg2
import pytest

from cdc import faults, pgcopy
from cdc.config import StreamConfig, parse
from cdc.events import ChangeEvent
from cdc.pipeline import Pipeline, open_stream
from cdc.sinks.sqlalchemy import SqlSink
from cdc.transport.direct import DirectTransport
from cdc.verify import verify_stream
from tests.cdc.conftest import Env, source_rows, sql, stream_spec, target_rows, wait_for

pytestmark = pytest.mark.postgres


def config(env: Env, **extra: Any) -> StreamConfig:
    spec = stream_spec(env.src, env.tgt)
    for k, v in extra.items():
        if k == "product":
            spec["tables"]["catalog_product"].update(v)
        else:
            spec[k] = v
    return parse({"streams": {env.name: spec}}).stream(env.name)


@contextmanager
def running(cfg: StreamConfig, **kw: Any) -> Iterator[Pipeline]:
    pipe = Pipeline(cfg, on_tick=lambda m: None, **kw)
    errors: list[BaseException] = []

    def go() -> None:
        try:
            pipe.run()
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    th = threading.Thread(target=go)
    th.start()
    try:
        yield pipe
    finally:
        pipe.stop()
        th.join(60)
    assert not errors, errors


def equal(env: Env) -> Callable[[], bool]:
    return lambda: source_rows(env.src) == target_rows(env.tgt)


def seed(env: Env, n: int) -> None:
    sql(env.src, "INSERT INTO catalog_category (name) SELECT 'c' || g FROM generate_series(1, 5) g")
    sql(env.src, f"INSERT INTO catalog_product (category_id, name, price) "
                 f"SELECT 1 + g % 5, 'p' || g, g FROM generate_series(1, {n}) g")


BIG = "SELECT string_agg(md5(g::text || 'toasted'), '') FROM generate_series(1, 300) g"  # 9,600 chars out of line


def test_unchanged_toast_value_is_never_written(cdc_env: Env) -> None:
    env = cdc_env
    seed(env, 3)
    sql(env.src, f"UPDATE catalog_product SET description = ({BIG}) WHERE id = 2")
    seen: list[ChangeEvent] = []

    class Spy(DirectTransport):
        def publish(self, events: Sequence[ChangeEvent]) -> None:
            seen.extend(events)
            super().publish(events)

    with running(config(env), transport=Spy()):
        wait_for(equal(env), 30, "initial copy")
        sql(env.src, "UPDATE catalog_product SET price = 9.5, version = version + 1 WHERE id = 2")
        wait_for(equal(env), 30, "the update")
    update = [e for e in seen if e.op == "u" and e.key == {"id": 2}][-1]
    assert update.unchanged == ("description",) and "description" not in (update.after or {})
    big = sql(env.src, "SELECT description FROM catalog_product WHERE id = 2")[0][0]
    assert len(big) == 9600 and sql(env.tgt, "SELECT description FROM products WHERE id = 2") == [(big,)]


def test_large_transaction_is_applied_in_bounded_batches_and_committed_once(cdc_env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    env = cdc_env
    seed(env, 1)
    writes: list[int] = []
    commits: list[int] = []
    real_write, real_commit = SqlSink.write, SqlSink.commit

    def write(self: SqlSink, events: Sequence[ChangeEvent]) -> None:
        writes.append(len(events))
        real_write(self, events)

    def commit(self: SqlSink, resume: Any = None) -> Any:
        commits.append(sum(writes))
        return real_commit(self, resume)

    monkeypatch.setattr(SqlSink, "write", write)
    monkeypatch.setattr(SqlSink, "commit", commit)
    cfg = config(env, batch_size=200)
    with running(cfg):
        wait_for(equal(env), 30, "initial copy")
        writes.clear()
        commits.clear()
        sql(env.src, "INSERT INTO catalog_product (category_id, name, price) "
                     "SELECT 1, 'bulk' || g, 1 FROM generate_series(1, 5000) g")
        wait_for(equal(env), 60, "the large transaction")
    assert sum(writes) == 5000 and max(writes) <= 200  # never the whole transaction at once
    assert commits == [5000]  # ... yet one target transaction: nobody sees half of it


@pytest.mark.parametrize("path", ["events", "copy"])
def test_crash_during_initial_copy_resumes_with_watermarks(cdc_env: Env, path: str,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Both ways of the initial copy: events through the sink, and COPY (cdc/pgcopy.py)."""
    env = cdc_env
    seed(env, 2000)
    cfg = config(env, snapshot_chunk=300)
    if path == "events":
        monkeypatch.setattr(pgcopy, "plan", lambda *a: (None, "the test copies by events"))

        class Crash(DirectTransport):
            calls = 0

            def publish(self, events: Sequence[ChangeEvent]) -> None:
                Crash.calls += 1
                if Crash.calls == 4:  # after a few chunks of the products table
                    raise RuntimeError("simulated crash")
                super().publish(events)

        with pytest.raises(RuntimeError, match="simulated crash"):
            Pipeline(cfg, transport=Crash(), on_tick=lambda m: None).run()
    else:
        with faults.enabled("snapshot.after_copy_chunk=raise@3"), \
                pytest.raises(faults.InjectedFault):
            Pipeline(cfg, on_tick=lambda m: None).run()
    state = sql(env.tgt, "SELECT state, last_key FROM strangler_cdc_snapshot WHERE source_table = 'catalog_product'")
    assert state and state[0][0] == "copying"
    copied_to = int(state[0][1].strip("[]"))
    # changes while it is down: on both sides of the copy frontier
    sql(env.src, f"UPDATE catalog_product SET version = version + 1, name = 'moved' WHERE id IN (1, {copied_to + 50})")
    sql(env.src, f"DELETE FROM catalog_product WHERE id IN (2, {copied_to + 60})")
    sql(env.src, "INSERT INTO catalog_product (category_id, name, price) VALUES (1, 'late', 3)")
    with running(cfg):
        wait_for(equal(env), 60, "the copy to finish while streaming")
    assert sql(env.tgt, "SELECT state FROM strangler_cdc_snapshot WHERE source_table = 'catalog_product'") == [("done",)]
    assert sql(env.tgt, "SELECT id, version FROM applied_log GROUP BY 1, 2 HAVING count(*) > 1") == []


def test_the_state_is_not_streaming_before_the_copy(cdc_env: Env, tmp_path: Any) -> None:
    """The applier thread starts (and connects) while the capture is still creating its slot:
    the stream must not say "streaming" then. `cdc status`, the dashboard and a user waiting
    for "streaming" before writing to the target read it, and a row written to the target
    before the copy is removed by it (the copy removes target rows the source lacks)."""
    env = cdc_env
    seed(env, 200)
    cfg = config(env)
    point = "source.after_slot_created"
    with faults.enabled(f"{point}=pause", tmp_path), running(cfg) as pipe:
        faults.wait_hit(tmp_path, point)  # the slot exists; the copy has not begun
        deadline = time.monotonic() + 1.0  # the applier, started first, connects meanwhile
        while time.monotonic() < deadline:
            assert pipe.metrics.state != "streaming", "streaming before the copy"
            time.sleep(0.02)
        faults.release(tmp_path, point)
        wait_for(lambda: pipe.metrics.state == "streaming", 60, "the stream to stream")
        assert source_rows(env.src) == target_rows(env.tgt)  # streaming: the copy is all there


def test_resnapshot_while_streaming_repairs_the_target(cdc_env: Env) -> None:
    env = cdc_env
    seed(env, 1000)
    with running(config(env, snapshot_chunk=250)):
        wait_for(equal(env), 30, "initial copy")
        sql(env.tgt, "DELETE FROM products WHERE id % 7 = 0")  # damage behind the stream's back
        sql(env.tgt, "UPDATE products SET title = 'wrong' WHERE id % 11 = 0")
        assert not equal(env)()
        out = env.cli("cdc", "snapshot", env.name, "catalog_product")
        assert out.returncode == 0, out.stderr
        sql(env.src, "UPDATE catalog_product SET version = version + 1 WHERE id % 13 = 0")  # and traffic
        wait_for(equal(env), 60, "the re-copy")


def test_filter_and_leaving_rows(cdc_env: Env) -> None:
    env = cdc_env
    seed(env, 20)
    cfg = config(env, product={"filter": [{"column": "price", "op": "gte", "value": 10}]})
    with running(cfg):
        def ok() -> bool:
            want = [r for r in source_rows(env.src)["products"] if r[3] >= 1000]
            return target_rows(env.tgt)["products"] == want
        wait_for(ok, 30, "filtered copy")
        assert sql(env.tgt, "SELECT min(price_cents) FROM products") == [(1000,)]
        sql(env.src, "UPDATE catalog_product SET price = 1 WHERE id = 15")  # leaves the filter
        sql(env.src, "UPDATE catalog_product SET price = 50 WHERE id = 3")  # enters it
        wait_for(ok, 30, "rows leaving and entering the filter")


def test_sink_writes_are_not_echoed_by_a_reverse_stream(cdc_env: Env) -> None:
    """Loop-free: the sink tags its writes with a replication origin the sources skip."""
    from cdc.sources.postgres import PostgresSource

    env = cdc_env
    seed(env, 3)
    # one file declares both: the reverse skips what its forward stream wrote (cdc/config.py)
    reverse = parse({"streams": {env.name: stream_spec(env.src, env.tgt),
                                 "back": {"source": {"url": env.tgt}, "target": {"url": env.src},
                                          "tables": {"products": "catalog_product"}}}}).stream("back")
    assert reverse.skip_origins == (env.name,)
    src = PostgresSource(reverse, ["products"])
    try:
        src.install()
        with running(config(env)):
            wait_for(equal(env), 30, "forward copy")
            sql(env.src, "UPDATE catalog_product SET name = 'forward' WHERE id = 1")
            wait_for(equal(env), 30, "forward change")
        sql(env.tgt, "UPDATE products SET title = 'service write' WHERE id = 2")  # a real service write
        seen: list[Any] = []
        for _ in range(20):
            seen += [i for i in src.poll(100, 0.2) if isinstance(i, ChangeEvent)]
            if seen:
                break
        assert [(e.op, e.key, e.after["title"]) for e in seen] == [("u", {"id": 2}, "service write")]
    finally:
        src.close()  # the fixture drops the slot once its walsender lets go


def test_new_column_with_copy_policy_flows_without_a_restart(cdc_env: Env) -> None:
    env = cdc_env
    seed(env, 3)
    sql(env.tgt, "ALTER TABLE products ADD COLUMN color text")
    with running(config(env, product={"new_columns": "copy"})):
        wait_for(equal(env), 30, "initial copy")
        # a row streamed first: the sink has mapped rows before the column comes
        sql(env.src, "INSERT INTO catalog_product (category_id, name, price) VALUES (1, 'before', 1)")
        wait_for(equal(env), 30, "the row streamed before the new column")
        sql(env.src, "ALTER TABLE catalog_product ADD COLUMN color text")
        sql(env.src, "INSERT INTO catalog_product (category_id, name, price, color) VALUES (1, 'new', 2, 'red')")
        wait_for(lambda: sql(env.tgt, "SELECT color FROM products WHERE title = 'new'") == [("red",)], 30,
                 "the new column's value")
    # started again, the stream compiles against today's table, where color is a column its
    # mapping does not name: new_columns: copy takes it again, instead of refusing to start
    sql(env.src, "INSERT INTO catalog_product (category_id, name, price, color) VALUES (1, 'later', 3, 'blue')")
    with running(config(env, product={"new_columns": "copy"})):
        wait_for(lambda: sql(env.tgt, "SELECT color FROM products WHERE title = 'later'") == [("blue",)], 30,
                 "the new column's value after a restart")


def test_verify_rechecks_rows_in_flight_instead_of_reporting_them(cdc_env: Env) -> None:
    env = cdc_env
    seed(env, 3000)
    with running(config(env)):
        wait_for(equal(env), 60, "initial copy")
        sql(env.src, "UPDATE catalog_product SET version = version + 1, price = price + 1")  # a burst
        out = env.cli("verify", env.name, "--json")  # right away: the stream may still be applying it
        assert out.returncode == 0, out.stdout + out.stderr
        assert json.loads(out.stdout)["equal"] is True


def test_key_change_and_truncate(cdc_env: Env) -> None:
    env = cdc_env
    seed(env, 10)
    with running(config(env)):
        wait_for(equal(env), 30, "initial copy")
        sql(env.src, "UPDATE catalog_product SET id = 1000 WHERE id = 4")  # old key must go
        wait_for(equal(env), 30, "the key change")
        sql(env.src, "TRUNCATE catalog_product")
        wait_for(lambda: sql(env.tgt, "SELECT count(*) FROM products") == [(0,)], 30, "the truncate")
        sql(env.src, "INSERT INTO catalog_product (category_id, name, price) VALUES (1, 'after', 1)")
        wait_for(equal(env), 30, "a row after the truncate")


def test_target_failure_stops_the_stream_without_dead_letters(cdc_env: Env) -> None:
    from cdc.errors import SinkError

    env = cdc_env
    seed(env, 5)
    cfg = config(env)
    pipe = Pipeline(cfg, on_tick=lambda m: None)
    state = {"step": 0}

    def until() -> bool:
        state["step"] += 1
        if state["step"] == 1:  # streaming: now break the target, then change the source
            sql(env.tgt, "ALTER TABLE products RENAME TO products_gone")
            sql(env.src, "UPDATE catalog_product SET name = 'x' WHERE id = 1")
        return state["step"] > 500

    with pytest.raises(SinkError, match="products"):
        pipe.run(until=until)
    assert sql(env.tgt, "SELECT count(*) FROM strangler_cdc_dead_letter") == [(0,)]
    sql(env.tgt, "ALTER TABLE products_gone RENAME TO products")  # fixed: the change arrives
    with running(cfg):
        wait_for(equal(env), 30, "the change after the fix")


def test_postgres_types_round_trip_through_copy_and_stream(cdc_env: Env) -> None:
    env = cdc_env
    ddl = """CREATE TABLE kinds (id int PRIMARY KEY, doc jsonb, tags text[], blob bytea,
             at timestamptz, day date, flag boolean, uid uuid, ratio float8, note varchar(20))"""
    sql(env.src, ddl)
    sql(env.tgt, ddl)
    row = ("""'{"a": [1, 2], "b": null}', '{"x","y z"}', '\\x00ff', '2026-01-02 03:04:05.123+02',
           '2026-01-02', true, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 0.1, 'tab\there'""")
    sql(env.src, f"INSERT INTO kinds SELECT g, {row} FROM generate_series(1, 100) g")  # COPY path
    spec = {"source": {"url": env.src}, "target": {"url": env.tgt}, "tables": {"kinds": "kinds"}}
    cfg = parse({"streams": {"kinds": spec}}).stream("kinds")
    both = "SELECT * FROM kinds ORDER BY id"
    with running(cfg):
        wait_for(lambda: sql(env.src, both) == sql(env.tgt, both), 30, "the copy")
        sql(env.src, f"INSERT INTO kinds VALUES (1000, {row})")  # VALUES path (one row)
        sql(env.src, """UPDATE kinds SET doc = '[1, "two"]', tags = NULL, flag = false WHERE id = 5""")
        wait_for(lambda: sql(env.src, both) == sql(env.tgt, both), 30, "the stream")
    src, tgt = sql(env.src, both), sql(env.tgt, both)
    assert src == tgt and src[4][1] == [1, "two"] and src[0][2] == ["x", "y z"]
    # and verify's in-database checksums agree on every type
    source, engine, mappings = open_stream(cfg)
    source.close()
    engine.dispose()
    s, t = psycopg2.connect(env.src), psycopg2.connect(env.tgt)
    try:
        assert all(d.equal for d in verify_stream(cfg, mappings, s, t, recheck_wait=0))
    finally:
        s.close()
        t.close()
