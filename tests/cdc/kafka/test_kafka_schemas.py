"""The ``schemas_enable`` shape (cdc/transport/kafka_schemas.py): Debezium's Connect schema per
column, the key and envelope schemas, and the wrapping our apply end takes off again."""

from __future__ import annotations

import json

import pytest

from cdc.config import parse
from cdc.errors import ConfigError
from cdc.mapping import TableSchema
from cdc.transport.debezium_values import Modes
from cdc.transport.kafka_schemas import column_schema, envelope_schema, key_schema, unwrap, wrapper
from cdc.transport.kafka_topics import KafkaSettings
from cdc.transport.kafka_values import DEFAULT_MODES


@pytest.mark.parametrize(("pg_type", "modes", "schema"), [
    ("integer", DEFAULT_MODES, {"type": "int32"}),
    ("bigint", DEFAULT_MODES, {"type": "int64"}),
    ("smallint", DEFAULT_MODES, {"type": "int16"}),
    ("double precision", DEFAULT_MODES, {"type": "double"}),
    ("boolean", DEFAULT_MODES, {"type": "boolean"}),
    ("text", DEFAULT_MODES, {"type": "string"}),
    ("numeric(10,2)", DEFAULT_MODES, {"type": "string"}),  # our string mode
    ("double precision", Modes(decimal="double"), {"type": "double"}),
    ("timestamp with time zone", DEFAULT_MODES,
     {"type": "string", "name": "io.debezium.time.ZonedTimestamp", "version": 1}),
    ("timestamp(3) without time zone", DEFAULT_MODES,
     {"type": "int64", "name": "io.debezium.time.Timestamp", "version": 1}),
    ("timestamp without time zone", DEFAULT_MODES,
     {"type": "int64", "name": "io.debezium.time.MicroTimestamp", "version": 1}),
    ("date", DEFAULT_MODES, {"type": "int32", "name": "io.debezium.time.Date", "version": 1}),
    ("uuid", DEFAULT_MODES, {"type": "string", "name": "io.debezium.data.Uuid", "version": 1}),
    ("jsonb", DEFAULT_MODES, {"type": "string", "name": "io.debezium.data.Json", "version": 1}),
    ("bytea", DEFAULT_MODES, {"type": "bytes"}),
    ("bytea", Modes(binary="hex"), {"type": "string"}),
    ("interval", DEFAULT_MODES, {"type": "string", "name": "io.debezium.time.Interval", "version": 1}),
    ("interval", Modes(interval="numeric"),
     {"type": "string"}),  # Debezium's microseconds lose months: the column travels as text
    ("time with time zone", DEFAULT_MODES, {"type": "string"}),  # as PostgreSQL's own text
])
def test_column_schema_is_debeziums(pg_type: str, modes: Modes, schema: dict[str, object]) -> None:
    assert column_schema(pg_type, modes) == {**schema, "optional": True}


def test_key_and_envelope_schemas_name_the_topic() -> None:
    table = TableSchema(name="items", columns={"id": "integer", "name": "text"}, pk=("id",))
    key = key_schema(table, "shop.public.items", DEFAULT_MODES)
    assert key == {"type": "struct", "name": "shop.public.items.Key", "optional": False,
                   "fields": [{"field": "id", "type": "int32", "optional": False}]}
    env = envelope_schema(table, "shop.public.items", DEFAULT_MODES, "postgresql")
    assert env["name"] == "shop.public.items.Envelope"
    fields = {f["field"]: f for f in env["fields"]}
    assert list(fields) == ["before", "after", "source", "transaction", "op", "ts_ms", "ts_us", "ts_ns"]
    assert fields["after"]["name"] == "shop.public.items.Value"
    assert fields["source"]["name"] == "io.debezium.connector.postgresql.Source"


def test_wrapped_payload_is_unchanged_and_unwraps() -> None:
    payload = json.dumps({"before": None, "after": {"id": 1}, "op": "c"}).encode()
    body = json.loads(wrapper({"type": "struct"})(payload))
    assert body == {"schema": {"type": "struct"}, "payload": json.loads(payload)}
    assert unwrap(body) == json.loads(payload)
    assert unwrap({"id": 1}) == {"id": 1}  # schemaless keys and values pass as they are


def test_schemas_enable_is_a_flag() -> None:
    def settings(value: object) -> KafkaSettings:
        return KafkaSettings.from_stream(parse({"streams": {"s": {
            "source": {"url": "postgresql://h/src"}, "target": {"url": "postgresql://h/tgt"},
            "tables": {"items": {"target": "items"}},
            "transport": {"kind": "kafka", "schemas_enable": value}}}}).stream("s"))

    assert settings(True).schemas_enable is True
    with pytest.raises(ConfigError, match="schemas_enable"):
        settings("yes")
