"""The PostgreSQL sink's bulk path (cdc/sinks/pgbulk.py): a run of source inserts is COPied
straight into the table, and merged as usual when the table has some of those keys already.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cdc.config import parse
from cdc.events import ChangeEvent, Position
from cdc.mapping import TableSchema, compile_stream
from cdc.sinks.sqlalchemy import SqlSink, describe, make_engine
from tests.cdc.conftest import sql

pytestmark = pytest.mark.postgres

SOURCE = TableSchema(name="items", columns={"id": "integer", "name": "text", "qty": "integer"}, pk=("id",),
                     dialect="postgresql")


@pytest.fixture
def sink(pg_dsn: str, tmp_path: Path) -> Iterator[SqlSink]:
    sql(pg_dsn, "CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL, qty int NOT NULL CHECK (qty >= 0))")
    cfg = parse({"streams": {"bulk": {"source": {"url": "postgresql://unused/db"}, "target": {"url": pg_dsn},
                                      "tables": {"items": {"target": "items"}}}}},
                path=str(tmp_path / "streams.yaml")).stream("bulk")
    engine = make_engine(pg_dsn)
    out = SqlSink(stream="bulk", engine=engine, mappings=compile_stream(cfg, {"items": SOURCE}, describe(engine)))
    yield out
    out.close()
    engine.dispose()


def _inserts(keys: range, name: str, bad: int | None = None) -> list[ChangeEvent]:
    """Inserts of `keys`; the one of key `bad` has a quantity the table's CHECK refuses."""
    return [ChangeEvent(op="c", table="items", key={"id": k}, before=None,
                        after={"id": k, "name": name, "qty": -1 if k == bad else 1},
                        position=Position(1000 + k, 1), last=k == keys[-1]) for k in keys]


def _apply(sink: SqlSink, events: list[ChangeEvent]) -> None:
    sink.begin()
    sink.write(events)
    sink.commit()


def _staging_tables(dsn: str) -> int:
    """Temp staging tables of any session (pg_class lists every session's)."""
    return sql(dsn, "SELECT count(*) FROM pg_class WHERE relname LIKE '\\_strangler\\_stg\\_%' "
                     "AND relpersistence = 't'")[0][0]


def test_a_run_of_new_rows_goes_straight_into_the_table(sink: SqlSink, pg_dsn: str) -> None:
    _apply(sink, _inserts(range(1, 201), "new"))
    assert sql(pg_dsn, "SELECT count(*), min(id), max(id), min(name), max(name) FROM items") == [(200, 1, 200, "new", "new")]
    assert _staging_tables(pg_dsn) == 0  # no staging table, no merge
    assert sql(pg_dsn, "SELECT count(*) FROM strangler_cdc_dead_letter") == [(0,)]


def test_inserts_of_keys_the_table_has_are_merged_not_failed(sink: SqlSink, pg_dsn: str) -> None:
    # a copy (or a replay) brought some of the keys before their inserts stream in
    sql(pg_dsn, "INSERT INTO items SELECT g, 'copied', 5 FROM generate_series(50, 120) g")
    _apply(sink, _inserts(range(1, 201), "streamed"))
    assert sql(pg_dsn, "SELECT name, count(*) FROM items GROUP BY name") == [("streamed", 200)]
    assert sql(pg_dsn, "SELECT count(*) FROM strangler_cdc_dead_letter") == [(0,)]
    # and the next runs of inserts stage and merge for a while, then try straight in again
    _apply(sink, _inserts(range(201, 401), "later"))
    assert sql(pg_dsn, "SELECT count(*) FROM items WHERE name = 'later'") == [(200,)]


def test_a_row_the_table_refuses_among_new_rows_is_dead_lettered_alone(sink: SqlSink, pg_dsn: str) -> None:
    _apply(sink, _inserts(range(1, 201), "new", bad=77))
    assert sql(pg_dsn, "SELECT count(*) FROM items") == [(199,)]
    assert sql(pg_dsn, "SELECT count(*) FROM items WHERE id = 77") == [(0,)]
    dead = sql(pg_dsn, "SELECT position, reason FROM strangler_cdc_dead_letter")
    assert len(dead) == 1 and dead[0][0].endswith("#1") and "check" in dead[0][1].lower(), dead
    assert str(Position(1077, 1)) == dead[0][0]

