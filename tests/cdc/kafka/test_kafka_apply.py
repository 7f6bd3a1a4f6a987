"""The Kafka apply end's fast paths: a message parses exactly as the general path parses it,
and decoding only the columns that need it gives what decoding every column gave."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdc.events import ChangeEvent, Position
from cdc.mapping import TableSchema
from cdc.transport.kafka_apply import _event
from cdc.transport.kafka_values import DEFAULT_MODES, convert, decode_row, decoders

_scalars = (st.none() | st.booleans() | st.integers(min_value=-(1 << 70), max_value=1 << 70)
            | st.floats(allow_nan=True, allow_infinity=True) | st.text())
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=3)
                       | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=8)
# the fields as our capture and Debezium send them ...
_USUAL_SOURCE = {
    "index": st.integers(0, 1 << 31), "ts_ms": st.integers(0, 1 << 45) | st.none(), "last": st.booleans(),
    "db": st.text(max_size=4), "schema": st.text(max_size=4), "txId": st.integers(0, 1 << 40) | st.none(),
    "snapshot": st.sampled_from(["false", "true", "last"]), "unchanged": st.lists(st.text(max_size=4), max_size=2),
    "extent": _values, "version": st.text(max_size=4), "sequence": st.text(max_size=8),
    "ts_ns": st.integers(0, 1 << 62),
}
_rows = st.none() | st.dictionaries(st.text(max_size=6), _values, max_size=5)
_USUAL = {"before": _rows, "after": _rows, "ts_ms": st.integers(0, 1 << 45) | st.none(), "transaction": st.none(),
          "ts_us": st.integers(0, 1 << 52)}
_usual = st.fixed_dictionaries({
    "op": st.sampled_from(list("curdt")),
    "source": st.fixed_dictionaries({"table": st.text(max_size=8), "lsn": st.integers(0, (1 << 64) - 1)},
                                    optional=_USUAL_SOURCE)}, optional=_USUAL)
# ... and with any field odd, which only the general path can tell apart
_odd = _values | st.just("12") | st.just(1.0)
_odd_source = st.fixed_dictionaries({"table": st.text(max_size=8) | _odd, "lsn": st.integers(0, 1 << 70) | _odd},
                                    optional={k: v | _odd for k, v in _USUAL_SOURCE.items()})
_odd_envelopes = st.fixed_dictionaries({"op": st.sampled_from(list("curdt")) | _odd, "source": _odd_source | _odd},
                                       optional={k: v | _odd for k, v in _USUAL.items()})
_envelopes = _usual | _usual | _odd_envelopes | _values


def _general(value: bytes, key: bytes | None) -> ChangeEvent:
    return ChangeEvent.from_envelope(json.loads(value), json.loads(key) if key else {})


def _outcome(fn: Any, *args: Any) -> Any:
    try:
        ev = fn(*args)
    except (ValueError, KeyError, TypeError, AttributeError, OverflowError):
        return "refused"
    # NaN != NaN: compare the JSON text of what came back
    return json.dumps([ev.op, ev.table, ev.key, ev.before, ev.after, list(ev.position), ev.ts_ms, ev.last,
                       ev.db, ev.schema, ev.tx_id, ev.snapshot, list(ev.unchanged), ev.extent], sort_keys=True)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(env=_envelopes, key=st.none() | st.dictionaries(st.text(max_size=3), _values, max_size=2) | _values,
       spaced=st.booleans())
def test_a_message_parses_exactly_as_the_general_path(env: Any, key: Any, spaced: bool) -> None:
    sep = (", ", ": ") if spaced else (",", ":")
    value = json.dumps(env, separators=sep).encode()
    key_bytes = None if key is None else json.dumps(key).encode()
    assert _outcome(_event, value, key_bytes) == _outcome(_general, value, key_bytes)


def test_the_usual_message_takes_the_fast_path_and_odd_ones_the_general(monkeypatch: Any) -> None:
    """Not only equal: the usual message must not fall back to json (else it is no faster)."""
    import cdc.transport.kafka_apply as ka

    calls = []
    real = ka.json.loads
    monkeypatch.setattr(ka.json, "loads", lambda *a, **k: calls.append(1) or real(*a, **k))
    usual = {"before": None, "after": {"id": 1, "v": "x"}, "op": "c", "ts_ms": 5,
             "source": {"table": "t", "lsn": 10, "index": 2, "ts_ms": 0, "last": True, "db": "d",
                        "schema": "public", "txId": 7, "snapshot": "false", "unchanged": [],
                        "version": "3", "sequence": "[null,\"10\"]", "ts_ns": 1, "xmin": None}}
    ev = _event(json.dumps(usual).encode(), b'{"id":1}')
    assert calls == [] and (ev.position, ev.ts_ms, ev.key, ev.tx_id) == (Position(10, 2), 5, {"id": 1}, 7)
    usual["after"] = {"id": 1, "f": math.nan}  # NaN: not JSON, but json.dumps writes it and json reads it
    ev = _event(json.dumps(usual).encode(), b'{"id":1}')
    assert calls and ev.after is not None and math.isnan(ev.after["f"])


_TYPES = {"i": "bigint", "s": "text", "n": "numeric(10,2)", "nn": "numeric", "b": "boolean", "f": "double precision",
          "tz": "timestamp with time zone", "ts": "timestamp without time zone", "d": "date", "by": "bytea",
          "iv": "interval", "a": "integer[]", "j": "jsonb", "u": "uuid", "t": "time without time zone"}
_SAMPLE = {"i": 5, "s": "x", "n": "12.50", "nn": "NaN", "b": True, "f": 1.5, "tz": "2024-05-06T05:08:09.123400Z",
           "ts": 1714972089123456, "d": 19849, "by": "AAE=", "iv": "P1Y2M3DT4H5M6.5S", "a": [1, None, 3],
           "j": '{"a": 1}', "u": "5f0c3e8e-0c8a-4f57-9d63-6a4b4a1f1e6a", "t": 3723000000}


def test_decoding_in_place_equals_decoding_every_column() -> None:
    schema = TableSchema(name="t", columns=_TYPES, pk=("i",))
    codecs = decoders(schema, DEFAULT_MODES)
    from cdc.transport import debezium_values as dbz
    from cdc.transport.kafka_values import _debezium_shaped

    # as the apply end decoded before: every Debezium-shaped column, through its decoder
    every = {c: dbz.decoder(t, DEFAULT_MODES) for c, t in _TYPES.items() if _debezium_shaped(t, DEFAULT_MODES)}
    row = dict(_SAMPLE, missing_column=1, s=None)
    expected = convert(row, every)
    decode_row(row, codecs)
    assert repr(row) == repr(expected)  # repr: Decimal('NaN') is not equal to itself
    # left out: what decodes to itself (int, text, bool, jsonb, uuid) and what travels as our
    # own value (arrays)
    assert sorted(c for c, _ in codecs) == sorted(set(_TYPES) - {"i", "s", "b", "j", "u", "a"})
    with pytest.raises(TypeError):
        decode_row([1, 2], codecs)  # type: ignore[arg-type]  # a row that is not an object
