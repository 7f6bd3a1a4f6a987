"""Per-column conversions a mapping may name (``convert: decimal_to_cents``).

Each converter turns a source value into the target's representation in Python (for the
stream) and has a PostgreSQL expression doing the same inside the database (for `verify`).
None stays None. A value a converter cannot take raises ValueError: the sink sends that
event to the dead-letter table.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any


def _decimal(v: Any) -> Decimal:
    if isinstance(v, bool):
        raise ValueError(f"not a number: {v!r}")
    try:
        d = v if isinstance(v, Decimal) else Decimal(str(v))
    except InvalidOperation:
        raise ValueError(f"not a number: {v!r}") from None
    if not d.is_finite():
        raise ValueError(f"not a finite number: {v!r}")
    return d


_ONE = Decimal(1)


def decimal_to_cents(v: Any) -> int:
    # Runs once per streamed row: a finite Decimal under 10^26 (so ×100 is exact within the
    # context's 28 digits) takes the short way; the rest the checked one.
    if v.__class__ is Decimal and v.is_finite() and v.adjusted() < 26:
        return int(v.scaleb(2).to_integral_value(rounding=ROUND_HALF_UP))
    return int((_decimal(v) * 100).quantize(_ONE, rounding=ROUND_HALF_UP))


def cents_to_decimal(v: Any) -> Decimal:
    return (Decimal(int(v)) / 100).quantize(Decimal("0.01"))


def to_bool(v: Any) -> bool:
    if isinstance(v, str):
        low = v.strip().lower()
        if low in ("t", "true", "1", "yes", "y"):
            return True
        if low in ("f", "false", "0", "no", "n"):
            return False
        raise ValueError(f"not a boolean: {v!r}")
    return bool(v)


def json_text(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v, sort_keys=True, default=str)


@dataclass(frozen=True)
class Converter:
    name: str
    fn: Callable[[Any], Any]
    pg_sql: str  # {c} is the source column expression


CONVERTERS: dict[str, Converter] = {
    c.name: c
    for c in (
        Converter("decimal_to_cents", decimal_to_cents, "round(({c})::numeric * 100)::bigint"),
        Converter("cents_to_decimal", cents_to_decimal, "round(({c})::numeric / 100, 2)"),
        Converter("to_int", lambda v: int(_decimal(v)), "({c})::numeric::bigint"),
        Converter("to_str", str, "({c})::text"),
        Converter("to_float", lambda v: float(v), "({c})::float8"),
        Converter("to_bool", to_bool, "({c})::boolean"),
        Converter("bool_to_int", lambda v: int(to_bool(v)), "({c})::boolean::int"),
        Converter("int_to_bool", lambda v: int(v) != 0, "(({c})::int <> 0)"),
        Converter("json_text", json_text, "({c})::text"),
    )
}


def apply(name: str | None, value: Any) -> Any:
    if name is None or value is None:
        return value
    return CONVERTERS[name].fn(value)
