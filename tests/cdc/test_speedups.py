"""The compiled per-row loops (cdc/_speedups.c) give exactly what their Python versions give.

The stream runs the compiled ones wherever they built, so they are held to the Python ones
on generated input: a pgoutput tuple decodes to the same values of the same types, a source
row maps to the same target row (or the same error), and rows format to the same COPY bytes. The end-to-end type test runs on both (test_types.py).
"""

from __future__ import annotations

import datetime as dt
import struct
from decimal import Decimal
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdc import convert, native
from cdc.sinks import pgbulk
from cdc.sinks.sqlalchemy import map_row_py
from cdc.sources import pgoutput as pg
from tests.conftest import service_missing


@pytest.fixture(scope="module")
def compiled() -> ModuleType:
    try:
        from cdc import _speedups
    except ImportError as exc:
        service_missing("the compiled cdc._speedups (a C compiler and Python's headers: Debian "
                        "apt-get install gcc python3-dev, then reinstall with `make test`)", exc)
    return _speedups


# -- decode_tuple --------------------------------------------------------------------------
_TEXT = st.text(st.characters(codec="utf-8"), max_size=40)
_BY_KIND: dict[str, st.SearchStrategy[str]] = {
    "s": _TEXT,
    "i": st.integers(-(2**70), 2**70).map(str),  # past int8 too: the slow branch of the C code
    "f": st.one_of(st.floats().map(repr), st.sampled_from(["NaN", "Infinity", "-Infinity", "-0"])),
    "n": st.one_of(st.decimals(allow_nan=False, allow_infinity=False).map(str),
                   st.sampled_from(["NaN", "Infinity", "-Infinity", "0.00", "-1E+5"])),
    "b": st.sampled_from(["t", "f"]),
}


@st.composite
def tuples(draw: Any) -> tuple[bytes, pg.RelationInfo]:
    """A pgoutput Insert message of a generated relation, every column form included."""
    kinds = draw(st.lists(st.sampled_from(sorted(_BY_KIND)), min_size=1, max_size=12))
    parts = []
    for kind in kinds:
        form = draw(st.sampled_from("tttnub"))
        if form == "t":
            data = draw(_BY_KIND[kind]).encode()
            parts.append(b"t" + struct.pack("!i", len(data)) + data)
        elif form == "b":
            data = draw(st.binary(max_size=20))
            parts.append(b"b" + struct.pack("!i", len(data)) + data)
        else:
            parts.append(form.encode())
    cols = tuple(f"c{i}" for i in range(len(kinds)))
    rel = pg.RelationInfo(1, "public", "t", "d", cols, [0] * len(cols), [-1] * len(cols),
                          [i == 0 for i in range(len(cols))], "".join(kinds))
    body = struct.pack("!h", len(cols)) + b"".join(parts)
    return b"I" + struct.pack("!I", 1) + b"N" + body + b"trailing", rel


def _typed(result: tuple[dict[str, Any], list[str], int]) -> tuple[Any, ...]:
    row, unchanged, pos = result
    return [(k, type(v), repr(v)) for k, v in row.items()], unchanged, pos


@settings(max_examples=300, deadline=None)
@given(tuples())
def test_a_tuple_decodes_alike_compiled_and_in_python(compiled: ModuleType,
                                                      case: tuple[bytes, pg.RelationInfo]) -> None:
    buf, rel = case
    assert _typed(compiled.decode_tuple(buf, 6, rel.columns, rel.kinds)) == _typed(pg.tuple_data_py(buf, 6, rel))


@settings(max_examples=50, deadline=None)
@given(tuples())
def test_a_truncated_tuple_is_an_error_not_a_crash(compiled: ModuleType,
                                                   case: tuple[bytes, pg.RelationInfo]) -> None:
    buf, rel = case
    end = pg.tuple_data_py(buf, 6, rel)[2]
    for cut in range(6, end):
        with pytest.raises(ValueError, match="truncated"):
            compiled.decode_tuple(buf[:cut], 6, rel.columns, rel.kinds)


def test_the_stream_decodes_with_the_compiled_loop_where_it_built(compiled: ModuleType) -> None:
    assert native.speedups is compiled or native.why_pure == "STRANGLER_PURE_PYTHON is set"


# -- copy_rows -----------------------------------------------------------------------------
_VALUES = st.one_of(
    st.none(), _TEXT, st.integers(), st.booleans(), st.floats(),
    st.decimals(), st.datetimes(timezones=st.one_of(st.none(), st.just(dt.UTC))),
    st.dates(), st.times(),
    st.dictionaries(_TEXT, st.one_of(st.none(), st.integers(), _TEXT), max_size=3),
)


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 6).flatmap(lambda n: st.lists(st.lists(_VALUES, min_size=n, max_size=n), max_size=8)))
def test_rows_format_alike_compiled_and_in_python(compiled: ModuleType, values: list[list[Any]]) -> None:
    names = tuple(f"c{i}" for i in range(len(values[0]))) if values else ("c0",)
    rows = [dict(zip(names, v, strict=True)) for v in values]
    assert compiled.copy_rows(rows, names, pgbulk._other_text) == pgbulk.copy_text_py(rows, names)


@pytest.mark.parametrize("odd", [b"bytes", [1, 2], {1, 2}, object()])
def test_a_value_without_a_simple_text_form_is_none_in_both(compiled: ModuleType, odd: Any) -> None:
    rows = [{"a": 1, "b": "x"}, {"a": 2, "b": odd}]
    assert compiled.copy_rows(rows, ("a", "b"), pgbulk._other_text) is None
    assert pgbulk.copy_text_py(rows, ("a", "b")) is None


def test_copy_escapes_what_copy_reads_as_syntax(compiled: ModuleType) -> None:
    rows = [{"a": "tab\tnew\nline\rback\\slash é", "b": None, "c": Decimal("NaN"), "d": True}]
    want = b"tab\\tnew\\nline\\rback\\\\slash \xc3\xa9\t\\N\tNaN\tt\n"
    assert compiled.copy_rows(rows, ("a", "b", "c", "d"), pgbulk._other_text) == want
    assert pgbulk.copy_text_py(rows, ("a", "b", "c", "d")) == want


def test_a_missing_column_is_a_key_error_in_both(compiled: ModuleType) -> None:
    with pytest.raises(KeyError):
        compiled.copy_rows([{"a": 1}], ("a", "b"), pgbulk._other_text)
    with pytest.raises(KeyError):
        pgbulk.copy_text_py([{"a": 1}], ("a", "b"))


# -- map_row -------------------------------------------------------------------------------
def _refuse(v: Any) -> Any:
    raise ValueError(f"refused {v!r}")


# (converter, (classes taken as they are, instance classes, coercion)) as _Table builds them
_CONVERTERS = [None, convert.decimal_to_cents, str, _refuse]
_COERCIONS = [(frozenset(), None, None), (frozenset({int}), int, lambda v: int(Decimal(str(v)))),
              (frozenset({bool}), bool, lambda v: v.lower() in ("t", "true", "1") if isinstance(v, str) else bool(v)),
              (frozenset({Decimal, int}), (Decimal, int), lambda v: Decimal(str(v))),
              (frozenset({str}), str, lambda v: f"json:{v!r}")]
_ROW_VALUES = st.one_of(st.none(), st.integers(-10**6, 10**6), st.booleans(), _TEXT.filter(lambda t: len(t) < 8),
                        st.decimals(allow_nan=False, allow_infinity=False, places=2, min_value=-10**6, max_value=10**6),
                        st.sampled_from(["12", "t", "false", "1.5", "x"]))


@st.composite
def mappings(draw: Any) -> tuple[dict[str, Any], tuple[tuple[Any, ...], ...]]:
    n = draw(st.integers(1, 6))
    columns = tuple((f"s{i}", f"t{i}", draw(st.sampled_from(_CONVERTERS)), *draw(st.sampled_from(_COERCIONS)))
                    for i in range(n))
    present = draw(st.lists(st.booleans(), min_size=n, max_size=n))  # absent columns stay absent
    row = {f"s{i}": draw(_ROW_VALUES) for i in range(n) if present[i]}
    return row, columns


def _outcome(fn: Any, *args: Any) -> Any:
    try:
        out = fn(*args)
    except (ValueError, TypeError, ArithmeticError) as exc:
        return type(exc).__name__
    return [(k, type(v), repr(v)) for k, v in out.items()]


@settings(max_examples=400, deadline=None)
@given(mappings())
def test_a_row_maps_alike_compiled_and_in_python(compiled: ModuleType,
                                                 case: tuple[dict[str, Any], tuple[tuple[Any, ...], ...]]) -> None:
    row, columns = case
    assert _outcome(compiled.map_row, row, columns) == _outcome(map_row_py, row, columns)


def test_a_bool_is_not_taken_as_an_integer_in_either(compiled: ModuleType) -> None:
    """bool is an int subclass: both send it through the integer column's coercion."""
    columns = (("a", "b", None, *_COERCIONS[1]),)
    assert _outcome(compiled.map_row, {"a": True}, columns) == _outcome(map_row_py, {"a": True}, columns) \
        == "InvalidOperation"
    assert compiled.map_row({"a": 7}, columns) == map_row_py({"a": 7}, columns) == {"b": 7}
