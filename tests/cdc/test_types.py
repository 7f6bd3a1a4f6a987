"""Value types round-trip byte-exact (copied and streamed, direct and over Kafka), or the
mapping is refused at configuration time with the fix."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import sqlite3
import uuid
from collections.abc import Callable
from typing import Any

import psycopg2
import pytest

from cdc import native
from cdc.config import StreamConfig, parse
from cdc.errors import ConfigError
from cdc.events import ChangeEvent, Position
from cdc.mapping import TableSchema, compile_stream, type_category
from cdc.verify import verify_stream
from devstack import KafkaServer
from tests.cdc.conftest import Env, sql, wait_for
from tests.cdc.test_stream_features import running
from tests.conftest import service_missing
from tests.kafka_fixtures import kafka_broker, streaming_over_kafka

__all__ = ["kafka_broker"]

# The same DDL on both sides: every value must come out as the source's own text.
DDL = """
CREATE DOMAIN posint AS integer CHECK (VALUE > 0);
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE typed (
    id int PRIMARY KEY, nums numeric[], words text[], d posint, m mood, iv interval, b bytea,
    u uuid, ip inet, j json, jb jsonb, n numeric, ts timestamptz, tt time with time zone
);
"""
COLUMNS = ["nums", "words", "d", "m", "iv", "b", "u", "ip", "j", "jb", "n", "ts", "tt"]
BIG = "12345678901234567890.123456789"
ROWS = [
    (1, "{1.50,NaN,-0.000}", ["a b", None, 'q"uote', "back\\slash", "", "tab\there"], 5, "happy",
     "1 year 2 mons 3 days 04:05:06.789", "\\x00ff", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
     "10.1.2.3/8", '{"b": 1,  "a": [2, 3],\n "b": "dup"}', '"hello"', "NaN", "infinity",
     "10:11:12.5+02"),
    (2, "{-1e-20,12345678901234567890.123456789}", ["x"], 1, "sad", "-1 days +02:03:00", "\\x",
     "00000000-0000-0000-0000-000000000000", "::1", BIG, BIG, "Infinity", "-infinity",
     "00:00:00-11:30"),
    (3, "{}", [], 2147483647, "ok", "00:00:00.000001", "\\x5c0a09", "ffffffff-ffff-ffff-ffff-ffffffffffff",
     "192.168.0.0/16", '"hello"', '{"z": 1, "a": {"k": [1.0, "t", null]}, "é": "\\u00e9"}',
     "-Infinity", "2024-02-29 23:59:59.999999+05:30", "23:59:59.999999+14"),
    (4, None, None, None, None, None, None, None, None, None, None, None, None, None),
]


def _insert(dsn: str, rows: list[tuple[Any, ...]]) -> None:
    conn = psycopg2.connect(dsn)
    with conn, conn.cursor() as cur:
        cur.executemany(f"INSERT INTO typed (id, {', '.join(COLUMNS)}) VALUES "
                        f"(%s, {', '.join(['%s'] * len(COLUMNS))})", rows)
    conn.close()


def as_text(dsn: str) -> dict[str, list[tuple[Any, ...]]]:
    return {c: sql(dsn, f"SELECT id, {c}::text FROM typed ORDER BY id") for c in COLUMNS}


def differences(env: Env) -> list[Any]:
    """Columns whose text differs, and dead letters: what a failing wait shows."""
    try:
        src, tgt = as_text(env.src), as_text(env.tgt)
    except psycopg2.Error as exc:
        return [str(exc)]
    out: list[Any] = [(c, sorted(set(src[c]) ^ set(tgt[c]))[:6]) for c in COLUMNS if src[c] != tgt[c]]
    with contextlib.suppress(psycopg2.Error):
        out += sql(env.tgt, "SELECT reason FROM strangler_cdc_dead_letter LIMIT 3")
    return out


def settle(env: Env, caught_up: Callable[[], bool], timeout: float, what: str) -> None:
    try:
        wait_for(caught_up, timeout, what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; still different: {differences(env)}") from None


def stream_config(env: Env, **extra: Any) -> StreamConfig:
    spec = {"source": {"url": env.src}, "target": {"url": env.tgt}, "snapshot_chunk": 3,
            "tables": {"typed": {"target": "typed"}}, **extra}
    return parse({"streams": {env.name: spec}}).stream(env.name)


def _exercise(env: Env, caught_up: Callable[[], bool]) -> None:
    """Changes made while streaming: one-row and bulk (the sink's COPY path), and updates."""
    _insert(env.src, [(10 + r[0], *r[1:]) for r in ROWS])
    # 80 rows in one transaction: the sink writes them with COPY
    sql(env.src, f"INSERT INTO typed SELECT id + 100 * g, {', '.join(COLUMNS)} FROM typed, "
                 "generate_series(1, 20) g WHERE id < 10")
    sql(env.src, """UPDATE typed SET jb = '"changed"', j = '[1.000, "x"]', n = 'Infinity',
                    iv = '1 mon -1 sec', b = '\\x00', ts = 'infinity', tt = '01:02:03-01',
                    nums = '{NaN}', words = '{"{}",","}', m = 'sad' WHERE id IN (1, 12)""")
    settle(env, caught_up, 60, "target equal to source, column by column as text")


def _prepare(env: Env) -> None:
    sql(env.src, DDL)
    sql(env.tgt, DDL)
    _insert(env.src, ROWS)  # before the stream starts: the initial copy


@pytest.mark.postgres
@pytest.mark.parametrize("loops", ["compiled", "pure"])
def test_every_type_round_trips_byte_exact_copied_and_streamed_direct(cdc_env: Env, loops: str,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """On the compiled per-row loops (cdc/_speedups.c) and on their Python versions."""
    from cdc.sinks import pgbulk
    from cdc.sources import pgoutput

    if loops == "compiled" and pgoutput.speedups is None:
        service_missing(f"the compiled cdc._speedups ({native.why_pure})", RuntimeError("not loaded"))
    if loops == "pure":
        monkeypatch.setattr(pgoutput, "speedups", None)
        monkeypatch.setattr(pgbulk, "speedups", None)
    env = cdc_env
    _prepare(env)
    cfg = stream_config(env)
    with running(cfg) as pipe:
        settle(env, lambda: as_text(env.src) == as_text(env.tgt), 30, "the initial copy")
        _exercise(env, lambda: as_text(env.src) == as_text(env.tgt))
        src, tgt = psycopg2.connect(env.src), psycopg2.connect(env.tgt)
        try:
            from cdc.pipeline import open_stream

            source, engine, mappings = open_stream(cfg)
            source.close()
            engine.dispose()
            diffs = verify_stream(cfg, mappings, src, tgt, recheck_wait=0)
        finally:
            src.close()
            tgt.close()
        assert pipe.metrics.dead_letters == 0
    assert [d.as_dict() for d in diffs if not d.equal] == []
    assert sql(env.tgt, "SELECT count(*) FROM strangler_cdc_dead_letter") == [(0,)]


@pytest.mark.postgres
@pytest.mark.kafka
@pytest.mark.slow
def test_every_type_round_trips_byte_exact_over_kafka(cdc_env: Env, kafka_broker: KafkaServer) -> None:
    env = cdc_env
    _prepare(env)
    prefix = f"t{uuid.uuid4().hex[:8]}"
    cfg = stream_config(env, transport={"kind": "kafka", "bootstrap": kafka_broker.bootstrap,
                                        "topic_prefix": prefix})
    with streaming_over_kafka(cfg) as errors:
        def caught_up() -> bool:
            assert not errors, errors
            return as_text(env.src) == as_text(env.tgt)

        settle(env, caught_up, 90, "the initial copy through Kafka")
        _exercise(env, caught_up)
    assert sql(env.tgt, "SELECT count(*) FROM strangler_cdc_dead_letter") == [(0,)]
    # on Kafka, in Debezium's encodings where they bring the value back exactly (the rest as
    # PostgreSQL's own text: cdc/transport/kafka_values.py)
    from confluent_kafka import Consumer

    from cdc.transport.debezium_values import encoder
    from cdc.transport.kafka_values import DEFAULT_MODES

    c = Consumer({"bootstrap.servers": kafka_broker.bootstrap, "group.id": uuid.uuid4().hex,
                  "auto.offset.reset": "earliest"})
    c.subscribe([f"{prefix}.public.typed"])
    row = None
    for _ in range(150):
        msg = c.poll(0.2)
        if msg is not None and msg.error() is None and msg.value() and json.loads(msg.key()) == {"id": 3}:
            row = json.loads(msg.value())["after"]
            break
    c.close()
    assert row is not None
    assert row["b"] == encoder("bytea", DEFAULT_MODES)("\\x5c0a09") == "XAoJ"
    assert row["ts"] == "2024-02-29T18:29:59.999999Z"  # Debezium's ZonedTimestamp, in UTC
    assert row["iv"] == encoder("interval", DEFAULT_MODES)("00:00:00.000001")  # ISO 8601 (string mode)
    assert row["tt"] == "23:59:59.999999+14"  # no Debezium encoding keeps the offset: our text


@pytest.mark.postgres
def test_the_source_describes_domains_enums_and_arrays_by_their_category(cdc_env: Env) -> None:
    from cdc.sources.postgres import PostgresSource

    sql(cdc_env.src, DDL)
    source = PostgresSource(stream_config(cdc_env), ["typed"])
    try:
        cats = source.describe()["typed"].categories
    finally:
        source.close()
    assert cats == {"id": "int", "nums": "array", "words": "array", "d": "int", "m": "enum",
                    "iv": "interval", "b": "bytes", "u": "uuid", "ip": "inet", "j": "json",
                    "jb": "json", "n": "num", "ts": "dt", "tt": "timetz"}


# -- configuration-time refusals (no database) ------------------------------------------------

def _compile(src_type: tuple[str, str], tgt_type: tuple[str, str], dialect: str = "postgresql",
             **table: Any) -> None:
    cfg = parse({"streams": {"s": {"source": {"url": "postgresql://h/src"},
                                   "target": {"url": "postgresql://h/tgt"},
                                   "tables": {"t": {"target": "t", **table}}}}}).stream("s")
    src = TableSchema(name="t", columns={"id": "integer", "c": src_type[0]}, pk=("id",),
                      categories={"id": "int", "c": src_type[1]}, dialect="postgresql")
    tgt = TableSchema(name="t", columns={"id": "INTEGER", "c": tgt_type[0]}, pk=("id",),
                      unique_sets=(("id",),), categories={"id": "int", "c": tgt_type[1]},
                      dialect=dialect)
    compile_stream(cfg, {"t": src}, {"t": tgt})


@pytest.mark.parametrize(("src", "tgt", "dialect", "words"), [
    (("interval", "interval"), ("INTEGER", "int"), "postgresql",
     ["streams.s.tables.t.columns.c", "interval -> INTEGER", "give the target column the source's type"]),
    (("jsonb", "json"), ("JSON", "json"), "sqlite", ["streams.s.tables.t.columns.c", "jsonb -> JSON",
                                                     "declare the target column TEXT"]),
    (("numeric[]", "array"), ("NUMERIC(10, 2)", "num"), "postgresql",
     ["numeric[] -> NUMERIC(10, 2)", "a array value has no exact form in a num column"]),
    (("bytea", "bytes"), ("TEXT", "text"), "postgresql", ["bytea -> TEXT", "or drop the column"]),
    (("time with time zone", "timetz"), ("TIME", "time"), "sqlite", ["time with time zone -> TIME"]),
])
def test_a_type_that_cannot_be_copied_exactly_is_refused_with_the_fix(src: tuple[str, str], tgt: tuple[str, str],
                                                                     dialect: str, words: list[str]) -> None:
    with pytest.raises(ConfigError) as err:
        _compile(src, tgt, dialect)
    for w in words:
        assert w in str(err.value)


@pytest.mark.parametrize(("src", "tgt", "dialect"), [
    (("posint", "int"), ("INTEGER", "int"), "postgresql"),  # a domain over integer
    (("numeric[]", "array"), ("NUMERIC[]", "array"), "postgresql"),
    (("numeric[]", "array"), ("TEXT", "text"), "sqlite"),  # PostgreSQL's text of the array
    (("jsonb", "json"), ("TEXT", "text"), "sqlite"),
    (("json", "json"), ("JSONB", "json"), "postgresql"),
    (("mood", "enum"), ("VARCHAR(10)", "text"), "postgresql"),
    (("interval", "interval"), ("INTERVAL", "interval"), "postgresql"),
    (("timestamp with time zone", "dt"), ("TIMESTAMP", "dt"), "postgresql"),
])
def test_types_of_one_category_or_into_text_are_accepted(src: tuple[str, str], tgt: tuple[str, str],
                                                         dialect: str) -> None:
    _compile(src, tgt, dialect)


def test_a_converter_is_still_named_where_one_helps() -> None:
    with pytest.raises(ConfigError, match="convert: decimal_to_cents"):
        _compile(("numeric(10,2)", "num"), ("BIGINT", "int"))


@pytest.mark.parametrize(("name", "category"), [
    ("INTERVAL", "interval"), ("interval day to second", "interval"), ("POINT", "other"),
    ("INTEGER", "int"), ("integer unsigned", "int"), ("numeric[]", "array"), ("NUMERIC(10, 2)", "num"),
    ("time with time zone", "timetz"), ("TIME", "time"), ("timestamp with time zone", "dt"),
    ("character varying(20)", "text"), ("jsonb", "json"), ("bytea", "bytes"), ("mood", "unknown"),
    ("", "unknown"),
])
def test_type_category_reads_whole_words(name: str, category: str) -> None:
    assert type_category(name) == category


def test_bytes_and_intervals_travel_in_json_as_text_postgresql_reads() -> None:
    ev = ChangeEvent(op="c", table="t", key={"id": 1}, before=None,
                     after={"id": 1, "b": b"\x00\xff", "iv": dt.timedelta(days=-1, seconds=5)},
                     position=Position(1, 1))
    after = ChangeEvent.from_json(ev.to_json()).after
    assert after == {"id": 1, "b": "\\x00ff", "iv": "P-1DT5.000000S"}  # not base64, not float seconds


def test_a_sqlite_target_gets_the_bytes_of_bytea_hex_text(tmp_path: Any) -> None:
    from cdc.sinks.sqlalchemy import SqlSink, describe, make_engine

    db = tmp_path / "t.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, b BLOB, j TEXT)")
    cfg = parse({"streams": {"s": {"source": {"url": "postgresql://h/src"}, "target": {"url": f"sqlite:///{db}"},
                                   "tables": {"t": "t"}}}}).stream("s")
    src = TableSchema(name="t", columns={"id": "integer", "b": "bytea", "j": "jsonb"}, pk=("id",),
                      categories={"id": "int", "b": "bytes", "j": "json"}, dialect="postgresql")
    engine = make_engine(cfg.target_url)
    sink = SqlSink(stream="s", engine=engine, mappings=compile_stream(cfg, {"t": src}, describe(engine)))
    sink.begin()
    sink.write([ChangeEvent(op="c", table="t", key={"id": 1}, before=None,
                            after={"id": 1, "b": "\\x00ff", "j": BIG}, position=Position(1, 1))])
    sink.commit()
    sink.close()
    engine.dispose()
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT b, j FROM t").fetchall() == [(b"\x00\xff", BIG)]
