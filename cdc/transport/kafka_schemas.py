"""Kafka Connect schemas for our Debezium-shaped messages: the ``schemas_enable: true`` shape.

Debezium under Kafka's JsonConverter with ``schemas.enable=true`` (the converter's own default)
writes every key and value as ``{"schema": <Connect schema>, "payload": <the schemaless
JSON>}``. Consumers that need the types — Debezium's JDBC sink connector among them, which
refuses a record without a key schema — read them there. With ``schemas_enable: true`` on a
stream our capture does the same: the payload is unchanged, and the schema is the one
Debezium's PostgreSQL connector gives the same column in the same modes (names such as
``io.debezium.time.ZonedTimestamp``, ``org.apache.kafka.connect.data.Decimal`` with its scale);
a column that travels as PostgreSQL's own text (kafka_values.py) is a plain string. One
difference: Debezium marks a NOT NULL column required; the capture does not know which are,
so every column but the key's is optional (tests/cdc/kafka/test_jdbc_sink.py). Our own
``source`` fields (index, last, unchanged) are in the source schema too. Only the data topics
take the shape: the control and schema topics are ours, and ``<prefix>.transaction`` (with
``transaction_metadata``) stays schemaless for now.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from cdc.mapping import TableSchema
from cdc.transport import debezium_values as dbz
from cdc.transport.kafka_values import _debezium_shaped

Schema = dict[str, Any]
_INTS = {"smallint": "int16", "int2": "int16", "bigint": "int64", "int8": "int64", "oid": "int64"}
_STRING_NAMES = {"uuid": "io.debezium.data.Uuid", "json": "io.debezium.data.Json",
                 "jsonb": "io.debezium.data.Json", "xml": "io.debezium.data.Xml",
                 "ltree": "io.debezium.data.Ltree"}
_SNAPSHOT = "true,first,first_in_data_collection,last_in_data_collection,last,false,incremental"


def _logical(type_: str, name: str, **parameters: str) -> Schema:
    schema: Schema = {"type": type_, "name": name, "version": 1}
    if parameters:
        schema["parameters"] = parameters
    return schema


def _numeric(t: Any, modes: dbz.Modes, money: bool) -> Schema:
    if modes.decimal == "string":
        return {"type": "string"}
    if modes.decimal == "double":
        return {"type": "double"}
    if money:
        return _logical("bytes", "org.apache.kafka.connect.data.Decimal", scale="2")
    if not t.args or (len(t.args) == 1 and t.args[0] == 0):
        return {"type": "struct", "name": "io.debezium.data.VariableScaleDecimal", "version": 1,
                "doc": "Variable scaled decimal", "fields": [
                    {"field": "scale", "type": "int32", "optional": False},
                    {"field": "value", "type": "bytes", "optional": False}]}
    scale = t.args[1] if len(t.args) > 1 else 0
    return _logical("bytes", "org.apache.kafka.connect.data.Decimal", scale=str(scale),
                    **{"connect.decimal.precision": str(t.args[0])})


def _time(t: Any, modes: dbz.Modes, stamp: bool) -> Schema:
    if modes.time == "connect":
        return _logical("int64" if stamp else "int32",
                        f"org.apache.kafka.connect.data.{'Timestamp' if stamp else 'Time'}")
    millis = t.precision <= 3 and (stamp or modes.time == "adaptive")
    if millis:
        return _logical("int64" if stamp else "int32", f"io.debezium.time.{'Timestamp' if stamp else 'Time'}")
    return _logical("int64", f"io.debezium.time.{'MicroTimestamp' if stamp else 'MicroTime'}")


def _scalar(t: Any, modes: dbz.Modes) -> Schema:
    kind = t.kind
    simple = {"float4": "float", "float8": "double", "bool": "boolean", "name": "string"}
    if kind in simple:
        return {"type": simple[kind]}
    if kind == "int":
        return {"type": _INTS.get(t.base, "int32")}
    if kind in ("numeric", "money"):
        return _numeric(t, modes, kind == "money")
    if kind == "string":
        name = _STRING_NAMES.get(t.base)
        return _logical("string", name) if name else {"type": "string"}
    if kind == "bytea":
        return {"type": "bytes" if modes.binary == "bytes" else "string"}
    if kind in ("bit", "varbit"):
        width = t.args[0] if t.args else (1 if kind == "bit" else 0)
        return {"type": "boolean"} if width == 1 else _logical("bytes", "io.debezium.data.Bits", length=str(width))
    if kind == "date":
        return _logical("int32", "io.debezium.time.Date")
    if kind in ("time", "timestamp"):
        return _time(t, modes, kind == "timestamp")
    if kind == "timestamptz":
        return _logical("string", "io.debezium.time.ZonedTimestamp")
    if kind == "timetz":
        return _logical("string", "io.debezium.time.ZonedTime")
    if kind == "interval":
        if modes.interval == "string":
            return _logical("string", "io.debezium.time.Interval")
        return _logical("int64", "io.debezium.time.MicroDuration")
    if kind == "point":
        return {"type": "struct", "name": "io.debezium.data.geometry.Point", "version": 1, "fields": [
            {"field": "x", "type": "double", "optional": False},
            {"field": "y", "type": "double", "optional": False},
            {"field": "wkb", "type": "bytes", "optional": True},
            {"field": "srid", "type": "int32", "optional": True}]}
    if kind == "hstore":
        return _logical("string", "io.debezium.data.Json")
    return {"type": "string"}


def column_schema(pg_type: str, modes: dbz.Modes, *, optional: bool = True) -> Schema:
    """The Connect schema of one column's values as our capture sends them."""
    if not _debezium_shaped(pg_type, modes):
        return {"type": "string", "optional": optional}  # PostgreSQL's own text
    t = dbz._parse_type(pg_type)
    if t.array:
        element = {**_scalar(t, modes), "optional": True}
        return {"type": "array", "items": element, "optional": optional}
    return {**_scalar(t, modes), "optional": optional}


def _row(schema: TableSchema, topic: str, modes: dbz.Modes, columns: tuple[str, ...], name: str,
         optional: bool) -> Schema:
    return {"type": "struct", "name": f"{topic}.{name}", "optional": optional, "fields": [
        {"field": c, **column_schema(schema.columns[c], modes, optional=c not in schema.pk)}
        for c in columns]}


def key_schema(schema: TableSchema, topic: str, modes: dbz.Modes) -> Schema:
    """Debezium's ``<topic>.Key``: the primary-key columns, sorted as our keys are."""
    return _row(schema, topic, modes, tuple(sorted(schema.pk)), "Key", False)


def _field(name: str, type_: str, optional: bool = True) -> Schema:
    return {"field": name, "type": type_, "optional": optional}


def envelope_schema(schema: TableSchema, topic: str, modes: dbz.Modes, connector: str) -> Schema:
    """Debezium's ``<topic>.Envelope``: before/after, source (Debezium's fields and ours),
    the transaction block, op and the times."""
    value = _row(schema, topic, modes, tuple(schema.columns), "Value", True)
    source = {"type": "struct", "name": f"io.debezium.connector.{connector}.Source", "version": 1,
              "optional": False, "field": "source", "fields": [
                  _field("version", "string", False), _field("connector", "string", False),
                  _field("name", "string", False), _field("ts_ms", "int64", False),
                  {"field": "snapshot", **_logical("string", "io.debezium.data.Enum", allowed=_SNAPSHOT),
                   "optional": True, "default": "false"},
                  _field("db", "string", False), _field("sequence", "string"),
                  _field("ts_us", "int64"), _field("ts_ns", "int64"),
                  _field("schema", "string", False), _field("table", "string", False),
                  _field("txId", "int64"), _field("lsn", "int64"), _field("xmin", "int64"),
                  _field("origin", "string"), _field("origin_lsn", "int64"),  # never set by us
                  _field("index", "int64"), _field("last", "boolean"),
                  {"field": "unchanged", "type": "array", "items": {"type": "string", "optional": False},
                   "optional": True}]}
    transaction = {"type": "struct", "name": "event.block", "version": 1, "optional": True,
                   "field": "transaction", "fields": [
                       _field("id", "string", False), _field("total_order", "int64", False),
                       _field("data_collection_order", "int64", False)]}
    return {"type": "struct", "name": f"{topic}.Envelope", "version": 2, "optional": False, "fields": [
        {**value, "field": "before"}, {**value, "field": "after"}, source, transaction,
        _field("op", "string", False), _field("ts_ms", "int64"), _field("ts_us", "int64"),
        _field("ts_ns", "int64")]}


def wrapper(schema: Schema) -> Callable[[bytes], bytes]:
    """JSON payload bytes -> ``{"schema": schema, "payload": …}`` bytes (the schema encoded once)."""
    head = b'{"schema":' + json.dumps(schema, separators=(",", ":")).encode() + b',"payload":'
    return lambda payload: head + payload + b"}"


def unwrap(body: Any) -> Any:
    """The payload of a ``{"schema", "payload"}`` document; any other JSON as it is."""
    if isinstance(body, dict) and body.keys() == {"schema", "payload"}:
        return body["payload"]
    return body


__all__ = ["column_schema", "envelope_schema", "key_schema", "unwrap", "wrapper"]
