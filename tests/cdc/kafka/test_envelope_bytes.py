"""The capture's messages are json.dumps's bytes of its envelope, however they are made.

cdc/transport/kafka_envelope.py writes each key and value straight to bytes from a per-table
template, compiled where cdc._speedups built (cdc/_speedups.c `json_bytes`, `json_row`,
`json_join`). Held here, on generated input, to what they stand for: the compiled functions
to their Python versions (the same bytes, or the same error), and a message to ``json.dumps``
of the envelope as a dict (`Envelopes.envelope`, the capture's former code).
"""

from __future__ import annotations

import datetime as dt
import math
from decimal import Decimal
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdc.events import ChangeEvent, Position, json_default
from cdc.mapping import TableSchema
from cdc.transport import kafka_envelope as ke
from cdc.transport.kafka_values import DEFAULT_MODES, convert, encoders
from tests.conftest import service_missing


@pytest.fixture(scope="module")
def compiled() -> ModuleType:
    try:
        from cdc import _speedups
    except ImportError as exc:
        service_missing("the compiled cdc._speedups (a C compiler and Python's headers: Debian "
                        "apt-get install gcc python3-dev, then reinstall with `make test`)", exc)
    return _speedups


def _outcome(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except (ValueError, TypeError, RecursionError) as exc:
        return type(exc).__name__, str(exc)


# every character, lone surrogates too (json escapes them as \udxxx)
_TEXT = st.text(st.characters(codec=None, categories=None), max_size=12)
_KEYS = st.one_of(_TEXT, st.integers(-(2**70), 2**70), st.floats(), st.booleans(), st.none())
_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), _TEXT,
    st.decimals(), st.datetimes(), st.dates(), st.binary(max_size=6), st.uuids(),
    st.timedeltas(), st.sampled_from([math.inf, -math.inf, math.nan, -0.0, 1e16, 1e-7, 2**63, -(2**63)]),
)
_VALUES = st.recursive(_SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.lists(inner, max_size=3).map(tuple),
    st.dictionaries(_KEYS, inner, max_size=4)), max_leaves=12)


@settings(max_examples=400, deadline=None)
@given(_VALUES, st.booleans())
def test_values_encode_alike_compiled_and_in_python(compiled: ModuleType, value: Any, sort_keys: bool) -> None:
    assert _outcome(compiled.json_bytes, value, json_default, sort_keys) == _outcome(ke.json_bytes_py, value, sort_keys)


def _circular() -> list[Any]:
    loop: list[Any] = [1]
    loop.append({"again": loop})
    return loop


class _Itself:
    """A value whose JSON form (by `default`) holds itself."""


@pytest.mark.parametrize("odd", [
    object(), {(1, 2): "a tuple key"}, {"a": {"b": {b"x": 1}}}, _circular(), {1: "int", "1": "str"},
    {"a": 1, 2: "mixed keys, sorted"}, [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]],
    _Itself(), {"nan": math.nan, "big": 10**30}, [Decimal("NaN"), Decimal("-0E+3")],
])
@pytest.mark.parametrize("sort_keys", [False, True])
def test_odd_values_give_the_same_bytes_or_error_in_both(compiled: ModuleType, odd: Any, sort_keys: bool) -> None:
    def default(v: Any) -> Any:
        return [v] if isinstance(v, _Itself) else json_default(v)

    import json

    def python(v: Any, sk: bool) -> bytes:
        return json.dumps(v, default=default, separators=(",", ":"), sort_keys=sk).encode()

    assert _outcome(compiled.json_bytes, odd, default, sort_keys) == _outcome(python, odd, sort_keys)


def test_nesting_past_the_recursion_limit_is_a_recursion_error_in_both(compiled: ModuleType) -> None:
    deep: list[Any] = []
    for _ in range(100_000):
        deep = [deep]
    assert _outcome(compiled.json_bytes, deep, json_default, False)[0] == "RecursionError"
    assert _outcome(ke.json_bytes_py, deep)[0] == "RecursionError"


def _refuse(v: Any) -> Any:
    raise ValueError(f"refused {v!r}")


_CODECS = [None, str, repr, _refuse, lambda v: [v, v], lambda v: object()]


@st.composite
def rows_and_codecs(draw: Any) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    names = draw(st.lists(_TEXT, max_size=6, unique=True))
    row = None if draw(st.integers(0, 9)) == 0 else {n: draw(_VALUES) for n in names}
    codecs = {n: draw(st.sampled_from(_CODECS)) for n in names + draw(st.lists(_TEXT, max_size=2))
              if draw(st.booleans())}
    return row, codecs


@settings(max_examples=400, deadline=None)
@given(rows_and_codecs(), st.booleans())
def test_rows_encode_alike_compiled_and_in_python(compiled: ModuleType, case: Any, sort_keys: bool) -> None:
    row, codecs = case
    assert _outcome(compiled.json_row, row, codecs, json_default, sort_keys) == \
        _outcome(ke.json_row_py, row, codecs, sort_keys)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.binary(max_size=8), st.one_of(_VALUES, st.binary(max_size=8))), max_size=6),
       st.binary(max_size=8))
def test_templates_fill_alike_compiled_and_in_python(compiled: ModuleType, pairs: list[tuple[bytes, Any]],
                                                     tail: bytes) -> None:
    parts, values = tuple(p for p, _ in pairs) + (tail,), tuple(v for _, v in pairs)
    assert _outcome(compiled.json_join, parts, values, json_default) == _outcome(ke.json_join_py, parts, values)


# -- the messages -----------------------------------------------------------------------------
SCHEMA = TableSchema(name="product", pk=("id", "sku"), columns={
    "id": "bigint", "sku": "text", "price": "numeric(10,2)", "ratio": "double precision",
    "active": "boolean", "made": "timestamp with time zone", "day": "date", "raw": "bytea",
    "mood": "mood", "span": "interval", "tags": "text[]"})
_STAMPS = st.datetimes(dt.datetime(1, 1, 1), dt.datetime(9999, 12, 31)).map(
    lambda d: d.strftime("%Y-%m-%d %H:%M:%S") + (f".{d.microsecond:06d}".rstrip("0") if d.microsecond else "") + "+00")
_COLUMNS: dict[str, st.SearchStrategy[Any]] = {
    "id": st.integers(-(2**63), 2**63 - 1), "sku": _TEXT,
    "price": st.decimals(allow_nan=False, places=2, min_value=-10**7, max_value=10**7) | st.just(Decimal("NaN")),
    "ratio": st.floats(), "active": st.booleans(), "made": _STAMPS | st.sampled_from(["infinity", "-infinity"]),
    "day": st.dates().map(str), "raw": st.binary(max_size=8).map(lambda b: "\\x" + b.hex()),
    "mood": _TEXT, "span": st.sampled_from(["00:00:00", "1 year 2 mons -3 days +04:05:06.5", "-00:00:01"]),
    "tags": st.sampled_from(["{}", "{a,b}", '{"x y",NULL}']),
}


@st.composite
def events(draw: Any) -> ChangeEvent:
    def row() -> dict[str, Any]:
        return {c: None if draw(st.integers(0, 5)) == 0 else draw(s) for c, s in _COLUMNS.items()}

    op = draw(st.sampled_from("crudt"))
    after = None if op in "dt" else row()
    unchanged: tuple[str, ...] = ()
    if after is not None and draw(st.booleans()):
        unchanged = tuple(draw(st.lists(st.sampled_from(["raw", "tags", "sku"]), unique=True, min_size=1)))
        for c in unchanged:
            del after[c]
    return ChangeEvent(
        op=op, table="product", key={"sku": draw(_TEXT), "id": draw(st.integers())},
        before=row() if op in "ud" and draw(st.booleans()) else None, after=after,
        position=Position(draw(st.integers(0, 2**64 - 1)), draw(st.integers(0, 2**31))),
        ts_ms=draw(st.integers(0, 2**45)), last=draw(st.booleans()), db=draw(_TEXT), schema=draw(_TEXT),
        tx_id=draw(st.none() | st.integers(0, 2**32)), snapshot="true" if op == "r" else "false",
        unchanged=unchanged, extent=draw(st.none() | st.just({"after": [1], "upto": [9], "keep": [[3]]})))


def _made(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except Exception as exc:  # an encoding that refuses a value: the same refusal
        return type(exc).__name__, str(exc)


@settings(max_examples=300, deadline=None)
@given(events(), st.sampled_from([None, {"id": "17:3", "total_order": 4, "data_collection_order": 2}]),
       st.sampled_from([SCHEMA, None]))
def test_a_message_is_json_dumps_of_its_envelope(ev: ChangeEvent, transaction: dict[str, Any] | None,
                                                 schema: TableSchema | None) -> None:
    """Both ways the value is made (the template, or the dict where a TOASTed value or a
    snapshot extent is in it), compiled or not: json.dumps of the envelope as the capture made
    it before, every column through its encoder."""
    def made(**kw: Any) -> ke.Envelopes:
        return ke.Envelopes(schema, DEFAULT_MODES, connector="postgresql", version="strangler-1.2",
                            name="pre\u00e9fix", **kw)

    envelopes, before = made(), made()
    before.codecs = encoders(schema, DEFAULT_MODES) if schema else {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ke.time, "time_ns", lambda: 1_796_166_627_780_318_123)
        want = _made(lambda: ke.json_bytes_py(before.envelope(ev, transaction)))
        assert _made(envelopes.value, ev, transaction) == want
        key = _made(lambda: ke.json_bytes_py(convert(ev.key, before.codecs), True))
        assert _made(envelopes.key, ev) == key
        for fn in ("json_bytes", "json_row", "json_join"):
            mp.setattr(ke, fn, getattr(ke, f"{fn}_py"))
        assert _made(envelopes.value, ev, transaction) == want
        assert _made(envelopes.key, ev) == key


def test_the_envelope_keeps_debeziums_field_order() -> None:
    ev = ChangeEvent(op="c", table="t", key={"id": 1}, before=None, after={"id": 1}, position=Position(5, 2),
                     ts_ms=7, db="d", schema="s", tx_id=9)
    envelopes = ke.Envelopes(None, DEFAULT_MODES, connector="postgresql", version="v", name="n")
    env = envelopes.envelope(ev, None)
    assert list(env) == ["before", "after", "source", "op", "ts_ms", "ts_us", "ts_ns", "transaction"]
    assert list(env["source"]) == ["connector", "db", "schema", "table", "lsn", "index", "txId", "ts_ms",
                                   "snapshot", "last", "unchanged", "version", "name", "sequence", "ts_us",
                                   "ts_ns", "xmin"]
    assert env["source"]["sequence"] == '[null, "5"]'


@pytest.mark.parametrize("column", ["a", "c"])
def test_a_codec_that_changes_the_row_is_an_error_in_both(compiled: ModuleType, column: str) -> None:
    def outcome(fn: Any) -> Any:
        row = {"a": 1, "b": 2, "c": 3}

        def shrink(v: Any) -> Any:
            row.pop("b", None)
            return v

        try:
            return fn(row, {column: shrink})
        except RuntimeError as exc:
            return str(exc)

    assert outcome(lambda r, c: compiled.json_row(r, c, json_default, False)) == outcome(ke.json_row_py) \
        == "dictionary changed size during iteration"


# -- a timestamptz column's encoder, compiled for UTC text ----------------------------------------
_TSTZ_TEXT = st.one_of(
    _STAMPS, st.sampled_from(["infinity", "-infinity", "+00", "2024-01-01 00:00:00+00", "2024-01-01 00:00:00.+00",
                              "2024-01-01 00:00:00.000000+00", "0044-03-15 12:00:00+00 BC", "2024-01-01x00:00:00+00",
                              "2024-01-01 00:00:00.123+05:30", "2024-01-01 00:00:00.12345678901+00",
                              "2024-01-01 00:00:00.1é+00", "12345-01-01 00:00:00+00"]),
    _TEXT.map(lambda t: "2024-01-01 00:00:00." + t + "+00"), _TEXT)


@settings(max_examples=400, deadline=None)
@given(_TSTZ_TEXT, st.sampled_from(["timestamp with time zone", "timestamptz(0)", "timestamptz(3)",
                                    "timestamp(1) with time zone", "timestamptz(6)"]))
def test_timestamptz_values_encode_alike_compiled_and_in_python(compiled: ModuleType, text: str, pg_type: str) -> None:
    from cdc.transport import debezium_values as dbz

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(dbz, "speedups", compiled)  # as where it built, whatever STRANGLER_PURE_PYTHON says
        fast = dbz.value_encoder(pg_type)
        mp.setattr(dbz, "speedups", None)
        slow = dbz.value_encoder(pg_type)
    assert fast is not slow and type(fast).__name__ == "builtin_function_or_method"
    assert _made(fast, text) == _made(slow, text)
