"""cdc/transport/debezium_values.py against Debezium itself: one table with a column per type
(special values included), read by Debezium 3.6's own PostgreSQL connector (snapshot, then
stream) and by our capture; every value we encode must be the one Debezium sent, and every
lossless column must decode back to our source's value."""

from __future__ import annotations

import json
import struct
import time
import uuid
from typing import Any

import psycopg2
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from cdc.config import parse
from cdc.events import ChangeEvent
from cdc.sources.postgres import PostgresSource
from cdc.transport.debezium_values import Modes, decoder, emitted, encoder, lossless, placeholder
from devstack import DebeziumConnector, KafkaServer
from tests.kafka_fixtures import debezium_runtime, kafka_broker

__all__ = ["debezium_runtime", "kafka_broker"]

SETUP = """
CREATE DOMAIN posint AS integer CHECK (VALUE > 0);
CREATE DOMAIN price AS numeric(5,2);
CREATE DOMAIN email AS text;
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
"""
HSTORE_KEYS = ", ".join(f'"k{i}"=>"{i}"' for i in range(20))  # 20 keys: a HashMap of 32 buckets
BIG = "(SELECT string_agg(md5(g::text), '') FROM generate_series(1, 400) g)"  # TOASTed out of line
TOASTED = ("big", "bigb", "bigi", "bigt")  # an update of row AFTER + 1 leaves them unchanged
# column: (type, values as SQL literals, one per row; rows past the list are NULL)
COLUMNS: dict[str, tuple[str, list[str]]] = {
    "n102": ("numeric(10,2)", ["12.34", "'NaN'", "-99999999.99", "0"]),
    "n": ("numeric", ["1.5000", "'NaN'", "'Infinity'", "'-Infinity'", "12345678901234567890.123456789",
                      "0.000000000000000000001", "100", "-0.000"]),
    "n5": ("numeric(5)", ["12345", "-1", "'NaN'"]),
    "ts": ("timestamptz", ["'2024-05-06 07:08:09.123456+02'", "'infinity'", "'-infinity'",
                           "'0044-03-15 10:00:00+00 BC'", "'294276-12-31 23:59:59.999999+00'",
                           "'1970-01-01 00:00:00+00'", "'1969-12-31 23:59:59.999999+00'"]),
    "tz3": ("timestamptz(3)", ["'2024-05-06 07:08:09.1239+02'", "'0044-03-15 10:00:00.5+00 BC'",
                               "'2000-01-01 00:00:00+00'"]),
    "tz0": ("timestamptz(0)", ["'2024-05-06 07:08:09.5+02'", "'1900-01-01 00:00:00+00'"]),
    "ts3": ("timestamp(3)", ["'2024-05-06 07:08:09.123'", "'infinity'", "'-infinity'",
                             "'0001-01-01 00:00:00 BC'", "'1969-12-31 23:59:59.999'"]),
    "tsn": ("timestamp", ["'2024-05-06 07:08:09.5'", "'-infinity'", "'infinity'",
                          "'294276-12-31 23:59:59.999999'", "'4713-01-01 00:00:00 BC'",
                          "'2000-01-01 00:00:00.000001'", "'1969-12-31 23:59:59.999999'"]),
    "d": ("date", ["'2024-02-29'", "'infinity'", "'-infinity'", "'4713-01-01 BC'", "'5874897-12-31'",
                   "'1582-10-04'", "'0001-01-01'"]),
    "tm": ("time", ["'13:14:15.123456'", "'24:00:00'", "'00:00:00'", "'00:00:00.000001'"]),
    "tm3": ("time(3)", ["'13:14:15.123'", "'23:59:59.9995'", "'00:00:00'"]),
    "ttz": ("timetz", ["'13:14:15.5+02'", "'00:00:00+14'", "'23:59:59.999999-12'", "'24:00:00+00'",
                       "'10:11:12+02:30'"]),
    "ttz3": ("time(3) with time zone", ["'13:14:15.123-05:30'", "'00:00:00+00'"]),
    "iv": ("interval", ["'1 year 2 mons 3 days 04:05:06.789'", "'-1 days +02:03:00'",
                        "'-1 year -2 mons +3 days -04:05:06.000001'", "'00:00:00'", "'100 hours'",
                        "'0.5 seconds'", "'-178000000 years'", "'1 mon 0.000001 sec'",
                        "'00:00:04.194303'"]),  # Debezium's doubles make it 4194302 µs
    "b": ("bytea", ["'\\x00ff'", "'\\x'", "decode(repeat('ab', 100), 'hex')", "'\\x5c0a09'", "'\\xfbff'"]),
    "u": ("uuid", ["'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'", "'00000000-0000-0000-0000-000000000000'"]),
    "j": ("json", ["'{\"b\": 1,  \"a\": [2, 3]}'", "'\"hello\"'", "'1e400'", "'null'", "'[1.000, \"x\"]'"]),
    "jb": ("jsonb", ["'{\"z\": 1, \"a\": {\"k\": [1.0, \"t\", null]}}'", "'\"hello\"'",
                     "'12345678901234567890.123456789'", "'{\"é\": \"\\u00e9\"}'", "'[]'"]),
    "ia": ("integer[]", ["'{1,NULL,3}'", "'{}'", "'{{1,2},{3,4}}'", "'{-2147483648}'"]),
    "ta": ("text[]", ["'{\"a b\",NULL,\"q\\\"uote\"}'", "E'{\"\", \"tab\\there\", \"back\\\\\\\\slash\", \"NULL\", \"{}\", \",\"}'",
                      "'{}'", "'{{a,b},{c,d}}'"]),
    "na": ("numeric[]", ["'{1.50,NULL,1e-20,12345678901234567890.123456789}'", "'{1.5,NaN}'", "'{}'",
                         "'{{1.1},{2.2}}'"]),
    "na2": ("numeric(5,2)[]", ["'{1.50,NULL,-999.99}'", "'{}'"]),
    "bo": ("boolean", ["true", "false"]),
    "bi": ("bigint", ["9223372036854775807", "-9223372036854775808", "0"]),
    "si": ("smallint", ["-32768", "32767"]),
    "i": ("integer", ["-2147483648", "2147483647"]),
    "r": ("real", ["1.5", "'NaN'", "'-Infinity'", "'1e-45'", "'3.4028235e+38'", "0.1", "'-0'"]),
    "dp": ("double precision", ["'1e308'", "'NaN'", "'Infinity'", "'5e-324'", "0.1", "'-0'",
                                "123456789012345678"]),
    "m": ("money", ["12.345", "'-92233720368547758.08'", "0", "1234567.89"]),
    "ip": ("inet", ["'10.1.2.3/8'", "'::1'"]),
    "ci": ("cidr", ["'192.168.0.0/16'", "'::/0'"]),
    "mac": ("macaddr", ["'08:00:2b:01:02:03'"]),
    "mac8": ("macaddr8", ["'08:00:2b:01:02:03:04:05'"]),
    "bit3": ("bit(3)", ["B'101'", "B'000'", "B'111'"]),
    "bit1": ("bit(1)", ["B'1'", "B'0'"]),
    "vb": ("bit varying", ["B'1011001'", "B''", "B'00000001'", "B'1000000000000000'"]),
    "vb5": ("bit varying(5)", ["B'101'", "B''"]),
    "vc": ("varchar(20)", ["'hello'", "''"]),
    "ch": ("char(3)", ["'ab'", "''", "' x'"]),
    "x": ("xml", ["'<a>x</a>'", "''"]),
    "tv": ("tsvector", ["'a fat cat'", "''"]),
    "txt": ("text", ["'ünïcödé 😀'", "''", "'__debezium_unavailable_value'"]),
    "qc": ('"char"', ["'x'", "''"]),
    "nm": ("name", ["'nm'", "''"]),
    "dom": ("posint", ["5", "2147483647"]),
    "pr": ("price", ["12.3", "-999.99", "'NaN'"]),
    "em": ("email", ["'a@b.c'"]),
    "en": ("mood", ["'happy'", "'sad'"]),
    "ena": ("mood[]", ["'{happy,NULL}'", "'{}'"]),
    "da": ("date[]", ["'{2024-02-29,NULL,1970-01-01}'", "'{\"4713-01-01 BC\",infinity,-infinity}'",
                      "'{1000-01-01,1582-10-04}'"]),
    "tza": ("timestamptz[]", ["'{\"2024-05-06 07:08:09.123456+02\",NULL}'", "'{infinity,-infinity}'",
                              "'{\"0044-03-15 10:00:00+00 BC\",\"1000-01-01 00:00:00+00\"}'"]),
    "tsa": ("timestamp[]", ["'{\"2024-05-06 07:08:09.5\"}'", "'{infinity,-infinity}'",
                            "'{\"0044-03-15 10:00:00 BC\",\"1000-01-01 00:00:00\",\"4713-01-01 00:00:00 BC\"}'"]),
    "tma": ("time[]", ["'{13:14:15.123456,NULL}'", "'{24:00:00}'"]),
    "ttza": ("timetz[]", ["'{13:14:15.123456+02}'", "'{00:00:00-11:30}'"]),
    "ua": ("uuid[]", ["'{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11,NULL}'"]),
    "jba": ("jsonb[]", ["ARRAY['{\"a\": 1}'::jsonb, NULL]"]),
    "ba": ("bytea[]", ["ARRAY['\\x00ff'::bytea, NULL, '\\x']"]),
    "boa": ("bool[]", ["'{t,f,NULL}'"]),
    "f4a": ("real[]", ["'{1.5,NULL,NaN,1e-45}'"]),
    "f8a": ("float8[]", ["'{1e308,-Infinity,0.1}'"]),
    "i8a": ("bigint[]", ["'{9223372036854775807,NULL}'"]),
    "i2a": ("smallint[]", ["'{-32768}'"]),
    "vca": ("varchar(5)[]", ["'{\"a b\",NULL}'"]),
    "ipa": ("inet[]", ["'{10.1.2.3/8,::1}'"]),
    "iva": ("interval[]", ["'{\"1 day\"}'"]),
    "ma": ("money[]", ["'{12.34}'"]),
    "xa": ("xml[]", ["ARRAY['<a/>'::xml]"]),
    "tq": ("tsquery", ["'fat & rat'"]),
    "lsn": ("pg_lsn", ["'16/B374D848'"]),
    "bx": ("box", ["'(1,2),(3,4)'"]),
    "o": ("oid", ["4294967295", "0"]),
    "pt": ("point", ["'(1.5,-2)'", "'(0.1,1e+20)'"]),
    "i4r": ("int4range", ["'[1,10)'", "'empty'"]),
    "tsr": ("tstzrange", ["'[\"2024-01-01 00:00:00+00\",\"2024-02-01 00:00:00+00\")'"]),
    "big": ("text", [BIG]),
    "bigb": ("bytea", [f"convert_to({BIG}, 'UTF8')"]),
    "bigi": ("integer[]", ["(SELECT array_agg(g) FROM generate_series(1, 3000) g)"]),
    "bigt": ("text[]", [f"ARRAY[{BIG}]"]),
    "hs": ("hstore", ["'\"a\"=>\"1\", \"b\"=>NULL'", "''", f"'{HSTORE_KEYS}'",
                      "E'\"q\\\\\"k\"=>\"back\\\\\\\\slash\", \"ctl\"=>\"\\x01\\n\"'"]),
}
ROWS = max(len(values) for _, values in COLUMNS.values()) + 1  # and a row of NULLs
AFTER = 100  # the streamed copy of row i has id AFTER + i

# What Debezium's snapshot (JDBC) sends unlike its stream (our encoder follows the stream):
# (column, our source's value) -> Debezium's snapshot value.
SNAPSHOT_DIFFERS: dict[tuple[str, Any], Any] = {
    ("d", "infinity"): -622191234, ("d", "-infinity"): -625821272,
    ("d", "4713-01-01 BC"): 1001860,  # the same day AD
    ("nm", "nm"): "nm", ("nm", ""): "",  # null while streaming
}

# Beyond 292277 AD, Debezium's microseconds overflow (they wrap): the decoder refuses them.
OVERFLOWS = {("tsn", "294276-12-31 23:59:59.999999")}

MODES = [
    pytest.param(Modes(), id="default-modes"),
    pytest.param(Modes(decimal="string", time="connect", binary="hex", interval="string"),
                 id="string-connect-hex"),
]



def _sql(dsn: str, statement: str) -> list[tuple[Any, ...]]:
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(statement)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


def _rows(table: dict[str, tuple[str, list[str]]], first_id: int) -> list[str]:
    out = []
    for r in range(ROWS):
        values = [vals[r] if r < len(vals) else "NULL" for _, vals in table.values()]
        out.append(f"INSERT INTO t VALUES ({first_id + r}, {', '.join(values)})")
    return out


def _debezium_types(dsn: str) -> dict[str, str]:
    """format_type of each column, a domain as its base type (as our wiring passes them)."""
    rows = _sql(dsn, """SELECT a.attname, CASE WHEN t.typtype = 'd'
                               THEN format_type(t.typbasetype, t.typtypmod)
                               ELSE format_type(a.atttypid, a.atttypmod) END
                        FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
                        WHERE a.attrelid = 't'::regclass AND a.attnum > 0""")
    return dict(rows)


def _consume(bootstrap: str, topic: str, expected: int) -> list[dict[str, Any]]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"g-{uuid.uuid4().hex}",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    got: list[dict[str, Any]] = []
    try:
        deadline = time.monotonic() + 30
        while len(got) < expected and time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is not None and msg.error() is None and msg.value():
                got.append(json.loads(msg.value()))
    finally:
        consumer.close()
    return got


def _our_streamed(source: PostgresSource, expected: int) -> tuple[dict[int, dict[str, Any]], ChangeEvent]:
    """Our capture's inserted rows by id, and the update."""
    rows: dict[int, dict[str, Any]] = {}
    updates: list[ChangeEvent] = []
    deadline = time.monotonic() + 30
    while (len(rows) < expected or not updates) and time.monotonic() < deadline:
        for item in source.poll(500, 0.5):
            if isinstance(item, ChangeEvent) and item.op == "c" and item.after is not None:
                rows[item.after["id"]] = item.after
            elif isinstance(item, ChangeEvent) and item.op == "u":
                updates.append(item)
    assert updates, "our capture did not see the update"
    return rows, updates[0]


def _drop_slots(dsn: str) -> None:
    for _ in range(100):
        if not any(r[0] for r in _sql(dsn, "SELECT active FROM pg_replication_slots "
                                           "WHERE database = current_database()")):
            break
        time.sleep(0.1)
    _sql(dsn, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
              "WHERE database = current_database()")


def _float32(value: Any) -> Any:
    """A real as a float4 (Java prints other digits of the same float: 1e-45 as 1.4E-45)."""
    if isinstance(value, float):
        return struct.unpack("<f", struct.pack("<f", value))[0]
    if isinstance(value, list):
        return [_float32(v) for v in value]
    return value


@pytest.mark.postgres
@pytest.mark.kafka
@pytest.mark.slow
@pytest.mark.parametrize("modes", MODES)
def test_our_encoding_is_debeziums_for_every_type(debezium_runtime: tuple[str, str], pg_dsn: str,
                                                   kafka_broker: KafkaServer, modes: Modes) -> None:
    table = dict(COLUMNS)
    if _sql(pg_dsn, "SELECT 1 FROM pg_available_extensions WHERE name = 'hstore'"):
        _sql(pg_dsn, "CREATE EXTENSION hstore")
    else:  # PostgreSQL's contrib is not installed: the rest still runs
        del table["hs"]
    columns = ", ".join(f'"{name}" {typ}' for name, (typ, _) in table.items())
    _sql(pg_dsn, SETUP + f"CREATE TABLE t (id int PRIMARY KEY, {columns})")
    for insert in _rows(table, 1):
        _sql(pg_dsn, insert)

    cfg = parse({"streams": {"dbzv": {"source": {"url": pg_dsn}, "target": {"url": pg_dsn},
                                      "tables": {"t": {"target": "t"}}}}}).stream("dbzv")
    source = PostgresSource(cfg, ["t"])
    prefix = f"dbzv{uuid.uuid4().hex[:8]}"
    connector = DebeziumConnector(dsn=pg_dsn, bootstrap=kafka_broker.bootstrap, topic_prefix=prefix,
                                  tables=["public.t"], options=modes.properties())
    try:
        source.install()  # our slot: from now on, our capture sees every change
        with connector:  # the snapshot read, Debezium streams
            for insert in _rows(table, AFTER + 1):
                _sql(pg_dsn, insert)
            _sql(pg_dsn, f"UPDATE t SET i = 7 WHERE id = {AFTER + 1}")
            streamed, update = _our_streamed(source, ROWS)
            got = _consume(kafka_broker.bootstrap, f"{prefix}.public.t", 2 * ROWS + 1)
        cur, _ = source.chunk_reader()  # what our snapshot reads: the stream's values
        cur.execute("SELECT * FROM t WHERE id < %s", (AFTER,))
        names = [d[0] for d in cur.description]
        snapshot = {row[0]: dict(zip(names, row, strict=True)) for row in cur.fetchall()}
    finally:
        source.close()
        connector.drop_slot()
        _drop_slots(pg_dsn)

    types = _debezium_types(pg_dsn)
    assert len(got) == 2 * ROWS + 1, f"Debezium sent {len(got)} of {2 * ROWS + 1} changes"
    # An unchanged TOASTed column: we leave it out, Debezium sends its placeholder
    assert set(update.unchanged) == set(TOASTED)
    updated = got.pop()["after"]
    assert updated["i"] == 7
    for col in TOASTED:
        assert updated[col] == placeholder(types[col], modes), col
    assert len(streamed) == ROWS
    for r in range(1, ROWS + 1):  # our snapshot's values and our stream's are the same
        assert repr({**streamed[AFTER + r], "id": r}) == repr(snapshot[r])  # NaN != NaN

    wrong: list[str] = []
    checked = decoded = 0
    for message in got:
        after = message["after"]
        rid = after["id"]
        ours = streamed[rid] if rid > AFTER else snapshot[rid]
        for col, (declared, _) in table.items():
            pg_type = types[col]
            value = ours[col]
            where = f"row {rid} ({message['op']}) {col} {pg_type} {value!r}"
            if not emitted(pg_type):
                if col in after:
                    wrong.append(f"{where}: Debezium sent {after[col]!r}, we said it leaves it out")
                continue
            theirs = after.get(col, "<absent>")
            if message["op"] == "r" and (col, value) in SNAPSHOT_DIFFERS:
                expected = SNAPSHOT_DIFFERS[(col, value)]
                if theirs != expected:
                    wrong.append(f"{where}: Debezium's snapshot sent {theirs!r}, not {expected!r}")
                continue
            if (col, value) == ("ta", "{{a,b},{c,d}}"):  # Java's names of two String[] objects
                if not all(str(v).startswith("[Ljava.lang.String;@") for v in theirs):
                    wrong.append(f"{where}: Debezium sent {theirs!r}")
                continue
            mine = encoder(pg_type, modes)(value)
            checked += 1
            if declared.startswith("real"):
                mine, theirs = _float32(mine), _float32(theirs)
            if json.dumps(mine) != json.dumps(theirs):
                wrong.append(f"{where}: Debezium {theirs!r}, ours {mine!r}")
            elif lossless(pg_type, modes) is None:
                decoded += 1
                try:
                    back = decoder(pg_type, modes)(after[col])
                except ValueError as exc:
                    if (col, value) not in OVERFLOWS or modes.time == "connect":
                        wrong.append(f"{where}: decoding failed: {exc}")
                    continue
                if repr(back) != repr(value):  # Decimal('1.5') == Decimal('1.50'), NaN != NaN
                    wrong.append(f"{where}: decoded {back!r}")
    assert wrong == [], "\n".join(wrong)
    assert checked > 50 * ROWS and decoded > 20 * ROWS
