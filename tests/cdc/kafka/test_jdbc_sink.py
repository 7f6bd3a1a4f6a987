"""A consumer written for Debezium reads our topics: Debezium's own JDBC sink connector, in
Kafka Connect standalone, applies what our capture half published into a second PostgreSQL
database, and afterwards every row there equals the source's, column by column (issue 13).

The stream sets ``schemas_enable: true`` (the sink needs the Connect schemas in the messages,
as it does from Debezium) and keeps our value modes (numeric and interval as strings: the
sink's JDBC URL has ``stringtype=unspecified``, so PostgreSQL reads them by the column's
type). The sink upserts by the record key and deletes on delete events."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import psycopg2
import pytest

from cdc.config import parse
from cdc.pipeline import Pipeline
from cdc.transport import kafka_run
from cdc.transport.kafka_values import DEFAULT_MODES
from devstack import DebeziumConnector, JdbcSink, KafkaServer, PostgresServer
from tests.cdc.kafka.test_messages_like_debezium import _drop_our_slot, _read, _sql
from tests.kafka_fixtures import debezium_runtime, jdbc_sink_runtime, kafka_broker

__all__ = ["debezium_runtime", "jdbc_sink_runtime", "kafka_broker"]
pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow]

TABLE = """CREATE TABLE items (
    id int PRIMARY KEY, name text NOT NULL, note varchar(20), price numeric(10,2), flag boolean,
    at timestamptz, at_local timestamp, day date, n bigint, small smallint, ratio double precision,
    u uuid, doc jsonb, data bytea, span interval)"""
COLUMNS = ("id", "name", "note", "price", "flag", "at", "at_local", "day", "n", "small", "ratio",
           "u", "doc", "data", "span")
ROW = ("'{name}', 'note {name}', 12.34, true, '2024-05-06 07:08:09.123456+02', "
       "'2024-05-06 07:08:09.5', '2024-02-29', 9007199254740993, -7, 0.5, "
       "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{{\"a\": [1, 2]}}', '\\x00ff', '1 year 2 mons 3 days 04:05:06.789'")
NULLS = "'{name}'" + ", NULL" * 13


def _rows(dsn: str) -> dict[int, tuple[str | None, ...]]:
    """Every row by id, each column as PostgreSQL's text (so equal means equal in the column)."""
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(f"SELECT {', '.join(f'{c}::text' for c in COLUMNS)} FROM items ORDER BY id")
            return {int(row[0]): row for row in cur.fetchall()}
    finally:
        conn.close()


def test_debeziums_jdbc_sink_applies_our_topics(jdbc_sink_runtime: tuple[str, str], pg_dsn: str,
                                                pg_server: PostgresServer,
                                                kafka_broker: KafkaServer) -> None:
    # the same topics, read by Debezium's sink into `theirs` and by our apply half into `ours`
    theirs, ours = (pg_server.create_database(f"t_{uuid.uuid4().hex[:12]}") for _ in range(2))
    for dsn in (pg_dsn, theirs, ours):
        _sql(dsn, TABLE)  # the service's table exists (the sink: schema.evolution=none)
    _sql(pg_dsn, f"INSERT INTO items VALUES (1, {ROW.format(name='one')}), (2, {ROW.format(name='two')}), "
                 f"(3, {NULLS.format(name='three')})")
    prefix = f"sink{uuid.uuid4().hex[:6]}"
    cfg = parse({"streams": {"tosink": {
        "source": {"url": pg_dsn}, "target": {"url": ours}, "tables": {"items": {"target": "items"}},
        "transport": {"kind": "kafka", "bootstrap": kafka_broker.bootstrap, "topic_prefix": prefix,
                      "schemas_enable": True},
    }}}).stream("tosink")
    capture = Pipeline(cfg, applies=False, on_tick=lambda m: None)
    stop = threading.Event()
    errors: list[BaseException] = []

    def run(part: Callable[[], object]) -> None:
        try:
            part()
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(capture.run,)),
               threading.Thread(target=run, args=(lambda: kafka_run.run(cfg, "apply", stop),))]
    sink = JdbcSink(bootstrap=kafka_broker.bootstrap, dsn=theirs, topics=[f"{prefix}.public.items"],
                    name=f"sink-{prefix}")
    try:
        threads[0].start()
        deadline = time.monotonic() + 60
        while capture.metrics.state != "streaming" and not errors and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not errors, errors
        threads[1].start()
        with sink:
            _sql(pg_dsn, f"INSERT INTO items VALUES (4, {ROW.format(name='four')}), "
                         f"(5, {NULLS.format(name='five')})")
            _sql(pg_dsn, "UPDATE items SET name = 'TWO', price = 99999999.99, flag = false, note = NULL, "
                         "at = '1999-12-31 23:59:59.999999-08', doc = '[]' WHERE id = 2")
            _sql(pg_dsn, "UPDATE items SET note = 'was null', price = 'NaN', data = '\\x', span = '-1 mons' "
                         "WHERE id = 3")
            _sql(pg_dsn, "DELETE FROM items WHERE id = 1")
            _sql(pg_dsn, "UPDATE items SET name = 'FOUR' WHERE id = 4")
            want = _rows(pg_dsn)
            deadline = time.monotonic() + 45
            while ((have := _rows(theirs)) != want or _rows(ours) != want) and time.monotonic() < deadline:
                sink.check()  # a sink that cannot read our messages fails its task: say why
                assert not errors, errors
                time.sleep(0.2)
            sink.check()
    finally:
        capture.stop()
        stop.set()
        for thread in threads:
            thread.join(60)
        _drop_our_slot(pg_dsn, cfg.slot)
    assert not errors, errors
    assert sorted(want) == [2, 3, 4, 5]
    for key in want:  # column by column, so a difference names its column
        assert dict(zip(COLUMNS, have.get(key, ()), strict=False)) == dict(zip(COLUMNS, want[key], strict=True)), key
    assert _rows(ours) == want  # our own apply half reads the {"schema", "payload"} shape too


def _fields(schema: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["field"]: f for f in schema["fields"]}


def test_our_schemas_are_debeziums(debezium_runtime: tuple[str, str], pg_dsn: str,
                                   kafka_broker: KafkaServer) -> None:
    """With schemas on, the Connect schemas of our keys and values are those Debezium's own
    connector (its JsonConverter with schemas.enable=true, our value modes) gives the same table:
    every column's type, logical name and parameters, the envelope and its source block."""
    _sql(pg_dsn, TABLE)
    _sql(pg_dsn, f"INSERT INTO items VALUES (1, {ROW.format(name='one')})")
    ours_prefix, dbz_prefix = f"ours{uuid.uuid4().hex[:6]}", f"dbz{uuid.uuid4().hex[:6]}"
    cfg = parse({"streams": {"schemas": {
        "source": {"url": pg_dsn}, "target": {"url": pg_dsn}, "tables": {"items": {"target": "items"}},
        "transport": {"kind": "kafka", "bootstrap": kafka_broker.bootstrap, "topic_prefix": ours_prefix,
                      "schemas_enable": True},
    }}}).stream("schemas")
    capture = Pipeline(cfg, applies=False, on_tick=lambda m: None)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            capture.run()
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    thread = threading.Thread(target=run)
    connector = DebeziumConnector(dsn=pg_dsn, bootstrap=kafka_broker.bootstrap, topic_prefix=dbz_prefix,
                                  tables=["public.items"],
                                  options={**DEFAULT_MODES.properties(), "key.converter.schemas.enable": "true",
                                           "value.converter.schemas.enable": "true"})
    try:
        thread.start()
        with connector:
            [(their_key, theirs)] = _read(kafka_broker.bootstrap, f"{dbz_prefix}.public.items", 1)
            [(our_key, ours)] = _read(kafka_broker.bootstrap, f"{ours_prefix}.public.items", 1)
    finally:
        capture.stop()
        thread.join(60)
        connector.drop_slot()
        _drop_our_slot(pg_dsn, cfg.slot)
    assert not errors, errors
    assert our_key["payload"] == their_key["payload"] and ours["payload"]["after"] == theirs["payload"]["after"]

    def named(schema: dict[str, Any], prefix: str) -> dict[str, Any]:
        return {**schema, "name": schema["name"].replace(prefix, "<topic-prefix>")}

    assert named(our_key["schema"], ours_prefix) == named(their_key["schema"], dbz_prefix)
    mine, debezium = _fields(ours["schema"]), _fields(theirs["schema"])
    assert list(mine) == list(debezium)  # before, after, source, transaction, op, ts_*
    assert {k: v for k, v in named(ours["schema"], ours_prefix).items() if k != "fields"} == \
        {k: v for k, v in named(theirs["schema"], dbz_prefix).items() if k != "fields"}
    for part in ("before", "after"):
        our_cols, their_cols = _fields(mine[part]), _fields(debezium[part])
        assert list(our_cols) == list(their_cols) == list(COLUMNS)
        for column, schema in their_cols.items():
            if column == "name":  # NOT NULL: Debezium says required, we cannot tell (documented)
                schema = {**schema, "optional": True}
            assert our_cols[column] == schema, column
    their_source, our_source = _fields(debezium["source"]), _fields(mine["source"])
    assert {f: our_source.get(f) for f in their_source} == their_source
    assert {k: v for k, v in mine["source"].items() if k != "fields"} == \
        {k: v for k, v in debezium["source"].items() if k != "fields"}
    for field in ("transaction", "op", "ts_ms", "ts_us", "ts_ns"):
        assert mine[field] == debezium[field], field
