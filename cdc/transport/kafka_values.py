"""Which encoding each column's values take on Kafka: Debezium's, or PostgreSQL's own text.

A column travels in Debezium's encoding (cdc/transport/debezium_values.py) for the stream's
modes wherever that encoding brings every value back exactly; where it would not (a time
zone offset, arrays read through JDBC, name, bit varying, a type Debezium leaves out, a
domain or enum whose base type the name does not say), the column travels as our
source's own value — PostgreSQL's text, or the number — exactly as it was read, and the
capture says so once at start. The README lists these differences.

Our defaults differ from Debezium's in two modes, for the same reason: numeric as a string
(Debezium's "precise" base64 turns NaN and ±Infinity into null and drops trailing zeros)
and interval as an ISO 8601 string (its microseconds count a month as 30.4375 days).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from cdc.mapping import TableSchema
from cdc.transport import debezium_values as dbz

log = logging.getLogger("cdc.kafka")

Codec = Callable[[Any], Any]
DEFAULT_MODES = dbz.Modes(decimal="string", interval="string")


def _same(value: Any) -> Any:
    return value


def _debezium_shaped(pg_type: str, modes: dbz.Modes) -> bool:
    return dbz.known(pg_type) and dbz.emitted(pg_type) and dbz.lossless(pg_type, modes) is None


def encoders(schema: TableSchema, modes: dbz.Modes) -> dict[str, Codec]:
    """Per column: our source value -> the JSON value on Kafka (absent: as it is). Never
    called with None, which stays None (`convert`)."""
    out: dict[str, Codec] = {}
    kept = []
    for column, pg_type in schema.columns.items():
        if _debezium_shaped(pg_type, modes):
            out[column] = dbz.value_encoder(pg_type, modes)
        else:
            kept.append(f"{column} ({pg_type})")
    if kept:
        log.info("%s: as PostgreSQL's own values, not Debezium's encoding (it would not bring them "
                 "back exactly): %s", schema.name, ", ".join(kept))
    return out


def decoders(schema: TableSchema, modes: dbz.Modes) -> tuple[tuple[str, Codec], ...]:
    """The columns whose JSON value on Kafka is not already the value our sink writes, each
    with its decoder (a text or int column, say, is left out: nothing to run per row)."""
    return tuple((column, dbz.decoder(pg_type, modes)) for column, pg_type in schema.columns.items()
                 if _debezium_shaped(pg_type, modes) and not dbz.decodes_as_is(pg_type, modes))


def decode_row(row: dict[str, Any] | None, codecs: tuple[tuple[str, Codec], ...]) -> None:
    """Decode a freshly parsed row in place (the apply end owns it); None stays None. A row
    that is not an object is an undecodable message (TypeError)."""
    if row is None:
        return
    if row.__class__ is not dict:
        raise TypeError(f"a row must be a JSON object, not {type(row).__name__}")
    for column, fn in codecs:
        value = row.get(column)
        if value is not None:
            row[column] = fn(value)


def placeholders(schema: TableSchema, modes: dbz.Modes) -> dict[str, Any]:
    """Per column: what an unchanged TOASTed value shows on Kafka (Debezium's placeholder in
    the column's own form where the column is Debezium-shaped)."""
    return {column: (dbz.placeholder(pg_type, modes) if _debezium_shaped(pg_type, modes) else dbz.UNAVAILABLE)
            for column, pg_type in schema.columns.items()}


def convert(row: Mapping[str, Any] | None, codecs: Mapping[str, Codec]) -> dict[str, Any] | None:
    if row is None:
        return None
    return {c: (v if v is None or (fn := codecs.get(c)) is None else fn(v)) for c, v in row.items()}


__all__ = ["DEFAULT_MODES", "convert", "decode_row", "decoders", "encoders", "placeholders"]
