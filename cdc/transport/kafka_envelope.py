"""The capture's data messages as bytes: each row change's key and Debezium envelope.

`Envelopes` is built once per table when the capture describes it: the columns' encodings
(cdc/transport/kafka_values.py) and the envelope's constant fields as JSON text. Per row only
the values are encoded, straight to bytes, compiled where cdc._speedups built
(cdc/_speedups.c `json_bytes`, `json_row`, `json_join`; the `*_py` versions here everywhere
else, cdc/native.py). Every message is byte for byte what ``json.dumps`` makes of the
envelope as a dict (`envelope`): tests/cdc/kafka/test_envelope_bytes.py holds the two to each
other, and the compiled functions to the Python ones.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

from cdc.events import ChangeEvent, json_default
from cdc.mapping import TableSchema
from cdc.native import speedups
from cdc.transport import debezium_values as dbz
from cdc.transport.kafka_values import Codec, convert, encoders, placeholders

UNAVAILABLE = dbz.UNAVAILABLE  # Debezium's unavailable.value.placeholder


def json_bytes_py(obj: Any, sort_keys: bool = False) -> bytes:
    """Compact JSON, as every message of ours is written (compiled: `json_bytes`)."""
    return json.dumps(obj, default=json_default, separators=(",", ":"), sort_keys=sort_keys).encode()


def json_row_py(row: Mapping[str, Any] | None, codecs: Mapping[str, Codec], sort_keys: bool = False) -> bytes:
    """A row, each value in its column's encoding (compiled: `json_row`)."""
    return json_bytes_py(convert(row, codecs), sort_keys)


def json_join_py(parts: Sequence[bytes], values: Sequence[Any]) -> bytes:
    """JSON text `parts` with each value's JSON between them; a bytes value is JSON text
    already (compiled: `json_join`)."""
    out = [parts[0]]
    for value, part in zip(values, parts[1:], strict=True):
        out.append(value if isinstance(value, bytes) else json_bytes_py(value))
        out.append(part)
    return b"".join(out)


if speedups is not None:
    _c_bytes, _c_row, _c_join = speedups.json_bytes, speedups.json_row, speedups.json_join

    def json_bytes(obj: Any, sort_keys: bool = False) -> bytes:
        return _c_bytes(obj, json_default, sort_keys)

    def json_row(row: Mapping[str, Any] | None, codecs: Mapping[str, Codec], sort_keys: bool = False) -> bytes:
        return _c_row(row, codecs, json_default, sort_keys)

    def json_join(parts: Sequence[bytes], values: Sequence[Any]) -> bytes:
        return _c_join(parts, values, json_default)
else:
    json_bytes, json_row, json_join = json_bytes_py, json_row_py, json_join_py


class Envelopes:
    """One table's messages: the key (its columns sorted) and the value, Debezium's envelope
    with its ``source`` fields (connector, name, version, sequence, ts_us/ts_ns, xmin) besides
    ours (index, last, unchanged), its placeholder for unchanged TOASTed values, and the time
    of publishing as the top-level ``ts_ms`` (``source.ts_ms`` is the source's commit time)."""

    def __init__(self, schema: TableSchema | None, modes: dbz.Modes, *, connector: str, version: str,
                 name: str) -> None:
        self.connector, self.version, self.name = connector, version, name
        # columns whose values travel as they are need no call per value
        self.codecs: dict[str, Codec] = {} if schema is None else {
            c: fn for c, fn in encoders(schema, modes).items() if fn is not dbz.AS_IS}
        self.placeholders: dict[str, Any] = {} if schema is None else placeholders(schema, modes)
        # the envelope as JSON text between its varying values (`value`): the keys in the order
        # `envelope` makes them
        j = json_bytes_py
        self._parts = (
            b'{"before":', b',"after":', b',"source":{"connector":' + j(connector) + b',"db":',
            b',"schema":', b',"table":', b',"lsn":', b',"index":', b',"txId":', b',"ts_ms":',
            b',"snapshot":', b',"last":',
            b',"unchanged":[],"version":' + j(version) + b',"name":' + j(name) + b',"sequence":',
            b',"ts_us":', b',"ts_ns":', b',"xmin":null},"op":', b',"ts_ms":', b',"ts_us":', b',"ts_ns":',
            b',"transaction":', b"}")

    def key(self, ev: ChangeEvent) -> bytes:
        return json_row(ev.key, self.codecs, True)

    def value(self, ev: ChangeEvent, transaction: dict[str, Any] | None) -> bytes:
        pos = ev.position
        if ev.unchanged or ev.extent is not None or type(pos.lsn) is not int:
            return json_bytes(self.envelope(ev, transaction))
        codecs = self.codecs
        now_us = time.time_ns() // 1000
        return json_join(self._parts, (
            json_row(ev.before, codecs), json_row(ev.after, codecs), ev.db, ev.schema, ev.table,
            pos.lsn, pos.seq, ev.tx_id, ev.ts_ms, ev.snapshot, ev.last,
            f'[null, "{pos.lsn}"]', ev.ts_ms * 1000, ev.ts_ms * 1_000_000, ev.op,
            now_us // 1000, now_us, now_us * 1000, transaction))

    def envelope(self, ev: ChangeEvent, transaction: dict[str, Any] | None) -> dict[str, Any]:
        """The value as a dict: what `value` writes as JSON."""
        env = ev.to_envelope()
        if self.codecs:
            env["before"], env["after"] = convert(ev.before, self.codecs), convert(ev.after, self.codecs)
        if ev.unchanged and env["after"] is not None:
            # an unchanged TOASTed value: Debezium's placeholder where the column would be (the
            # apply end drops the columns `source.unchanged` names, never by comparing values)
            shown = self.placeholders
            env["after"] = {**env["after"], **{c: shown.get(c, UNAVAILABLE) for c in ev.unchanged}}
        src = env["source"]
        src.update(version=self.version, connector=self.connector, name=self.name,
                   sequence=json.dumps([None, str(ev.position.lsn)]), ts_us=ev.ts_ms * 1000,
                   ts_ns=ev.ts_ms * 1_000_000, xmin=None)
        now_us = time.time_ns() // 1000
        env["ts_ms"], env["ts_us"], env["ts_ns"] = now_us // 1000, now_us, now_us * 1000
        env["transaction"] = transaction
        return env


__all__ = ["UNAVAILABLE", "Envelopes", "json_bytes", "json_bytes_py", "json_join", "json_join_py",
           "json_row", "json_row_py"]
