"""Our capture half and Debezium 3.6's own PostgreSQL connector on the same source and the
same workload, each into its own topics on one broker: the messages must agree field by
field — keys, op, before/after values, the source block, snapshot rows, tombstones — except
where README.md documents a difference (Debezium run here in our value modes)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any

import psycopg2
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from cdc.config import parse
from cdc.pipeline import Pipeline
from cdc.transport.kafka_values import DEFAULT_MODES
from devstack import DebeziumConnector, KafkaServer
from tests.kafka_fixtures import debezium_runtime, kafka_broker

__all__ = ["debezium_runtime", "kafka_broker"]
pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow]

TABLE = """CREATE TABLE items (
    id int PRIMARY KEY, name text, price numeric(10,2), data bytea, at timestamptz, day date,
    at_local timestamp, tod time, doc jsonb, u uuid, flag boolean, n bigint, ratio double precision,
    span interval)"""
ROW = ("'{name}', 12.34, '\\x00ff', '2024-05-06 07:08:09.123456+02', '2024-02-29', "
       "'2024-05-06 07:08:09.5', '13:14:15.25', '{{\"a\": [1, 2]}}', "
       "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', true, 9007199254740993, 0.5, '1 year 2 mons 3 days 04:05:06.789'")
# Fields that say when or where in the WAL, different in any two captures (and documented)
VOLATILE = {"ts_ms", "ts_us", "ts_ns", "lsn", "sequence", "txId", "version", "name", "snapshot", "xmin"}



def _sql(dsn: str, statement: str) -> None:
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(statement)
    finally:
        conn.close()


def _read(bootstrap: str, topic: str, n: int) -> list[tuple[Any, Any]]:
    """(key, value) of the first `n` messages, tombstones (value None) included."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex, "enable.auto.commit": False})
    c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    out: list[tuple[Any, Any]] = []
    deadline = time.monotonic() + 60
    try:
        while len(out) < n and time.monotonic() < deadline:
            msg = c.poll(0.2)
            if msg is not None and msg.error() is None:
                value = msg.value()
                out.append((json.loads(msg.key()) if msg.key() else None,
                            json.loads(value) if value is not None else None))
    finally:
        c.close()
    return out


def _drop_our_slot(dsn: str, slot: str) -> None:
    """Slots must not outlive the test: the server is shared, and a stale slot pins its WAL."""
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            for _ in range(100):  # a closed replication connection lets go of its slot a moment later
                cur.execute("SELECT active FROM pg_replication_slots WHERE slot_name = %s", (slot,))
                row = cur.fetchone()
                if row is None or not row[0]:
                    break
                time.sleep(0.1)
            cur.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                        "WHERE slot_name = %s AND NOT active", (slot,))
    finally:
        conn.close()


def test_our_messages_are_debeziums(debezium_runtime: tuple[str, str], pg_dsn: str,
                                    kafka_broker: KafkaServer) -> None:
    _sql(pg_dsn, TABLE)
    _sql(pg_dsn, f"INSERT INTO items VALUES (1, {ROW.format(name='one')}), (2, {ROW.format(name='two')})")
    ours_prefix, dbz_prefix = f"ours{uuid.uuid4().hex[:6]}", f"dbz{uuid.uuid4().hex[:6]}"
    cfg = parse({"streams": {"like": {
        "source": {"url": pg_dsn}, "target": {"url": pg_dsn}, "tables": {"items": {"target": "items"}},
        "transport": {"kind": "kafka", "bootstrap": kafka_broker.bootstrap, "topic_prefix": ours_prefix},
    }}}).stream("like")
    capture = Pipeline(cfg, applies=False, on_tick=lambda m: None)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            capture.run()
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    thread = threading.Thread(target=run)
    # Debezium in our value modes; TRUNCATE is not skipped (its default skips it)
    connector = DebeziumConnector(dsn=pg_dsn, bootstrap=kafka_broker.bootstrap, topic_prefix=dbz_prefix,
                                  tables=["public.items"],
                                  options={**DEFAULT_MODES.properties(), "skipped.operations": "none"})
    try:
        thread.start()
        with connector:
            deadline = time.monotonic() + 60
            while capture.metrics.state != "streaming" and not errors and time.monotonic() < deadline:
                time.sleep(0.1)
            assert not errors, errors
            _sql(pg_dsn, f"INSERT INTO items VALUES (3, {ROW.format(name='three')})")
            _sql(pg_dsn, "UPDATE items SET name = 'TWO', price = 99999999.99 WHERE id = 2")
            _sql(pg_dsn, "DELETE FROM items WHERE id = 1")
            # r r c u d tombstone
            theirs = _read(kafka_broker.bootstrap, f"{dbz_prefix}.public.items", 6)
            ours = _read(kafka_broker.bootstrap, f"{ours_prefix}.public.items", 6)
    finally:
        capture.stop()
        thread.join(60)
        connector.drop_slot()
        _drop_our_slot(pg_dsn, cfg.slot)
    assert not errors, errors
    assert len(theirs) == len(ours) == 6, (theirs, ours)
    assert [k for k, _ in ours] == [k for k, _ in theirs]  # keys
    assert [v and v["op"] for _, v in ours] == [v and v["op"] for _, v in theirs] == ["r", "r", "c", "u", "d", None]
    for (_, mine), (_, debezium) in zip(ours[:5], theirs[:5], strict=True):
        assert mine["after"] == debezium["after"], (mine["op"], mine["after"], debezium["after"])
        assert mine["before"] == debezium["before"], (mine["op"], mine["before"], debezium["before"])
        shared = {f: v for f, v in debezium["source"].items() if f not in VOLATILE}
        assert {f: mine["source"].get(f) for f in shared} == shared
        assert {"version", "name", "ts_ms", "lsn", "sequence", "snapshot"} <= set(mine["source"])
        assert mine["transaction"] is None and debezium["transaction"] is None
    # snapshot rows are marked as such (Debezium also says which is first/last: a documented difference)
    assert [v["source"]["snapshot"] for _, v in ours[:2]] == ["true", "true"]
    assert all(v["source"]["snapshot"] in ("first", "true", "last", "first_in_data_collection",
                                           "last_in_data_collection") for _, v in theirs[:2])
