"""Column values as Debezium's PostgreSQL connector writes them, and back.

Our capture reads each column as PostgreSQL's own text (DateStyle ISO, IntervalStyle
postgres, bytea hex) or, for a few types, a Python int, float, Decimal or bool
(cdc/sources/postgres.py). Kafka messages in Debezium's shape must carry the values Debezium
3.6's PostgreSQL connector puts in its default JSON (the schemaless JSON converter), so
`encoder(pg_type, modes)` turns one column's source value into exactly that JSON value, and
`decoder(pg_type, modes)` turns it back into the value our sink writes. `pg_type` is the
column's ``format_type()`` text; pass a domain as its base type (``format_type(typbasetype,
typtypmod)``); enums and other types this module does not know are strings, as Debezium
makes them. Both are built once per column and called once per value.

What each type becomes was read off Debezium itself (tests/cdc/kafka/
test_debezium_values_vs_debezium.py runs it); with the default `Modes`:

    smallint integer bigint oid     the number
    real, double precision          the number; NaN, Infinity, -Infinity as those strings
    boolean                         true / false
    numeric(p,s)                    base64 of the unscaled two's-complement big-endian integer
    numeric                         {"scale": s, "value": base64 unscaled}, trailing zeros dropped
    money                           as numeric(p,2)
    text varchar char uuid json(b)  the text itself (json and jsonb stay text, not parsed); xml,
      inet cidr macaddr(8) xml        tsvector, ranges, citext, ltree, enums too
    name                            null while streaming (a Debezium bug; the snapshot has the text)
    bytea                           base64 ("" when empty)
    bit(1), bit varying(1)          true / false
    bit(n), bit varying(n)          base64 of the bits as little-endian bytes, leading zero bytes cut
    date                            days since 1970-01-01; infinity -2147472692, -infinity -2147472691
    time(0-3) / time(4-6)           milliseconds / microseconds since midnight (24:00:00 is a day)
    timestamp(0-3) / timestamp(4-6) milliseconds / microseconds since the epoch, as in UTC;
                                      infinity 9223372036825200000 µs, -infinity -9223372036832400000 µs
    timestamp with time zone        "2024-05-06T05:08:09.123456Z": UTC, as many fraction digits as
                                      the precision (none for 0); "infinity" / "-infinity"
    time with time zone             "11:14:15.5Z": UTC, fraction digits only as needed
    interval                        microseconds, a month being 30.4375 days, computed in doubles
                                      and truncated (4.194303 s arrives as 4194302)
    point                           {"x", "y", "wkb" (base64 WKB), "srid": null}
    hstore                          its JSON object as text, keys in Java HashMap order
    arrays (1 dimension)            a list of the elements' values, read through JDBC: dates lose
                                      BC, timestamps before 1582-10-15 are Julian calendar dates,
                                      times keep milliseconds, times with time zone whole seconds

Left out of Debezium's messages altogether (`emitted` is False): tsquery, pg_lsn,
txid_snapshot, the geometric types but point, and arrays of interval, money, xml, bit
varying, point and name; arrays of domains too, which the caller must tell (a domain array's
format_type is a name we cannot tell from an enum array's, which arrives as null).

What cannot come back exactly (`lossless` gives the reason, and the fix where a mode is one):

    numeric, precise     NaN and ±Infinity become null (use decimal "string"); unconstrained
                         numeric loses its trailing zeros: 1.50 arrives as 1.5 (use "string")
    numeric/money, double  binary floating point (use "precise" or "string")
    interval, numeric    a month becomes 30.4375 days, µs may be off by one (use interval "string")
    time/timestamp(4-6), connect  milliseconds only (use "adaptive")
    time with time zone  the offset: only the UTC time arrives, and 24:00:00 becomes 00:00:00
    bit varying          leading zero bits (the length) are lost
    name                 null while streaming
    arrays               more than one dimension becomes a list of nulls; an array holding NaN or
                         Infinity numerics, or of enums, becomes null; the JDBC losses above
    timestamp            the last 29 years of PostgreSQL's range overflow Debezium's microseconds

Differences we do not copy: in its snapshot Debezium reads dates through JDBC, so a BC date
arrives as the same day AD and ±infinity as -622191234 / -625821272 (streamed, they are
right; we encode as streamed, and decode those two numbers as the infinities); a name column
has its text in the snapshot. Debezium stops on a time with time zone whose offset has
seconds (and, by its code, on an empty bit varying(1)); we encode them. A multi-dimensional
array of strings arrives as Java's names of its rows ("[Ljava.lang.String;@8fe81c6"); we
send nulls, as for other arrays. A real travels as Java prints a float (1e-45 as 1.4E-45):
the same float, other digits. Arrays of timestamptz and timetz go through the Debezium JVM's
time zone; we assume UTC, as ours runs. Money text is parsed as Debezium does (currency
sign, grouping commas), so lc_monetary must use '.' for the decimal point; we write it back
as C-locale text ("$1,234.56"). The timestamp overflow above is copied; its decoder refuses.

An unchanged TOASTed value is Debezium's `UNAVAILABLE` placeholder in the column's own form
(`placeholder`); our capture never sends one (events.py), so decoders do not look for it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import struct
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from decimal import MAX_PREC, ROUND_HALF_UP, Context, Decimal
from functools import lru_cache
from typing import Any

from cdc.native import speedups

__all__ = ["AS_IS", "UNAVAILABLE", "Modes", "decoder", "decodes_as_is", "emitted", "encoder", "known", "lossless",
           "placeholder", "value_encoder"]

UNAVAILABLE = "__debezium_unavailable_value"  # Debezium's unavailable.value.placeholder default

_OPTIONS = {  # our field: (Debezium's property, allowed values, default first)
    "decimal": ("decimal.handling.mode", ("precise", "double", "string")),
    "time": ("time.precision.mode", ("adaptive", "adaptive_time_microseconds", "connect")),
    "binary": ("binary.handling.mode", ("bytes", "base64", "hex", "base64-url-safe")),
    "interval": ("interval.handling.mode", ("numeric", "string")),
}


@dataclass(frozen=True, kw_only=True)
class Modes:
    """Debezium's value modes (its connector properties of the same meaning)."""

    decimal: str = "precise"
    time: str = "adaptive"
    binary: str = "bytes"
    interval: str = "numeric"

    def __post_init__(self) -> None:
        for name, (prop, allowed) in _OPTIONS.items():
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(f"{name} (Debezium's {prop}) = {value!r} is not one of "
                                 f"{', '.join(allowed)}")

    def properties(self) -> dict[str, str]:
        """These modes as Debezium connector properties."""
        return {prop: getattr(self, name) for name, (prop, _) in _OPTIONS.items()}


Encode = Callable[[Any], Any]

# -- types ------------------------------------------------------------------------------------

_NAMES = {
    "smallint": "int", "int2": "int", "integer": "int", "int": "int", "int4": "int",
    "bigint": "int", "int8": "int", "oid": "int",
    "real": "float4", "float4": "float4", "double precision": "float8", "float8": "float8",
    "numeric": "numeric", "decimal": "numeric", "money": "money",
    "boolean": "bool", "bool": "bool", "bytea": "bytea", "name": "name",
    "bit": "bit", "bit varying": "varbit", "varbit": "varbit",
    "date": "date", "time": "time", "time without time zone": "time",
    "time with time zone": "timetz", "timetz": "timetz",
    "timestamp": "timestamp", "timestamp without time zone": "timestamp",
    "timestamp with time zone": "timestamptz", "timestamptz": "timestamptz",
    "interval": "interval", "point": "point", "hstore": "hstore",
}
# Read as strings by Debezium (so are enums and every name not known here).
_STRINGS = frozenset({
    "text", "character varying", "varchar", "character", "char", "bpchar", '"char"', "citext",
    "ltree", "isbn", "uuid", "json", "jsonb", "xml", "tsvector", "inet", "cidr", "macaddr",
    "macaddr8", "int4range", "int8range", "numrange", "tsrange", "tstzrange", "daterange",
})
_DROPPED = frozenset({"tsquery", "pg_lsn", "txid_snapshot", "pg_snapshot", "box", "circle",
                      "line", "lseg", "path", "polygon", "refcursor", "regclass", "regtype",
                      "regproc", "xid", "xid8", "cid", "tid"})
# Array element types Debezium converts (through JDBC); other arrays of known types are left out.
_ARRAY_ELEMENTS = frozenset({"int", "float4", "float8", "numeric", "bool", "bytea", "string", "date",
                             "time", "timetz", "timestamp", "timestamptz", "hstore", "unknown"})
_ARRAY_DROPPED = frozenset({"xml"})  # strings, but not as array elements


@dataclass(frozen=True)
class _Type:
    kind: str  # a value of _NAMES, "string", "dropped" or "unknown" (a string, as enums are)
    args: tuple[int, ...]  # typmod numbers: numeric(p, s), bit(n), time(p)...
    array: bool
    base: str  # the type's name without typmod or []: "character varying", "jsonb"

    @property
    def precision(self) -> int:  # of time, timestamp(tz): fraction digits
        return self.args[0] if self.args else 6


def _parse_type(pg_type: str) -> _Type:
    text = " ".join(pg_type.strip().lower().split())
    array = text.endswith("[]")
    while text.endswith("[]"):
        text = text[:-2].rstrip()
    args: tuple[int, ...] = ()
    if "(" in text:
        head, _, rest = text.partition("(")
        inner, _, tail = rest.partition(")")
        args = tuple(int(a) for a in inner.split(",") if a.strip().lstrip("-").isdigit())
        text = f"{head.strip()} {tail.strip()}".strip()
    if text.startswith("interval"):  # interval day to second ...
        text = "interval"
    if text in _NAMES:
        kind = _NAMES[text]
    elif text in _STRINGS:
        kind = "string"
    elif text in _DROPPED:
        kind = "dropped"
    else:
        kind = "unknown"
    return _Type(kind, args, array, text)


def known(pg_type: str) -> bool:
    """Whether the name is a type this module knows (not an enum, a domain or another user
    type, which Debezium sends by what the type really is and the name does not say)."""
    return _parse_type(pg_type).kind != "unknown"


def emitted(pg_type: str) -> bool:
    """Whether Debezium puts a column of this type in its messages at all."""
    t = _parse_type(pg_type)
    if t.kind == "dropped":
        return False
    return not t.array or (t.kind in _ARRAY_ELEMENTS and t.base not in _ARRAY_DROPPED)


# -- dates and times: integer arithmetic over any year (Python's datetime stops at 9999) ------

_US = 1_000_000
_DAY_US = 86_400 * _US
_I64 = 1 << 64
_I64_MAX = (1 << 63) - 1
_I64_MIN = -(1 << 63)
DATE_INFINITY, DATE_MINUS_INFINITY = -2147472692, -2147472691  # -5877611-06-21 and -22: sic
_JDBC_DATE_INFINITY, _JDBC_DATE_MINUS_INFINITY = -622191234, -625821272  # Debezium's snapshot
TS_INFINITY_US, TS_MINUS_INFINITY_US = 9223372036825200000, -9223372036832400000
_TSTZ_ARRAY_MINUS_INFINITY = "+292269055-12-02T23:00:00.000000Z"  # what arrays carry, sic
_PG_MIN_DAY = -2440588  # 4714-11-24 BC


def _days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (year 0 is 1 BC)."""
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    return era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468


_PG_MAX_TS_US = (_days_from_civil(294276, 12, 31) + 1) * _DAY_US - 1  # 294276-12-31 23:59:59.999999
_PG_MAX_DATE_DAY = _days_from_civil(5874897, 12, 31)


def _civil_from_days(z: int) -> tuple[int, int, int]:
    z += 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (m <= 2), m, d


def _pg_days(text: str) -> int:
    """Days since 1970 of PostgreSQL's ISO date text ("2024-02-29", "0044-03-15 BC")."""
    bc = text[-3:] == " BC"
    return _days(text[:-3] if bc else text, bc)


def _pg_time_us(text: str) -> int:
    """Microseconds since midnight of "HH:MM:SS[.ffffff]" (hours always have two digits)."""
    us = (int(text[0:2]) * 3600 + int(text[3:5]) * 60 + int(text[6:8])) * _US
    if len(text) > 9:
        us += int(text[9:15]) * 10 ** (6 - len(text[9:15]))
    return us


def _split_offset(text: str) -> tuple[str, int]:
    """("13:14:15.5", offset in seconds) of "13:14:15.5+02", "...-05:30", "...+00:19:32"."""
    i = max(text.rfind("+"), text.rfind("-"))
    sign = -1 if text[i] == "-" else 1
    parts = text[i + 1:].split(":")
    secs = int(parts[0]) * 3600 + (int(parts[1]) * 60 if len(parts) > 1 else 0) + (
        int(parts[2]) if len(parts) > 2 else 0)
    return text[:i], sign * secs


def _pg_timestamp_us(text: str, with_zone: bool) -> int:
    """Microseconds since the epoch (UTC) of PostgreSQL's ISO timestamp(tz) text."""
    bc = text[-3:] == " BC"
    if bc:
        text = text[:-3]
    space = text.index(" ")
    clock = text[space + 1:]
    offset = 0
    if with_zone:
        clock, offset = _split_offset(clock)
    return _days(text[:space], bc) * _DAY_US + _pg_time_us(clock) - offset * _US


@lru_cache(maxsize=4096)  # a batch's timestamps share few days
def _days(day: str, bc: bool) -> int:
    y, m, d = day.split("-")
    return _days_from_civil(1 - int(y) if bc else int(y), int(m), int(d))


def _iso_year(y: int) -> str:
    """A year as java.time prints it: 4 digits, a sign beyond 9999 or before year 0."""
    if 0 <= y <= 9999:
        return f"{y:04d}"
    return f"+{y}" if y > 0 else f"-{-y:04d}"


def _fraction(us: int) -> str:
    """As few fraction digits as needed, none for zero (java.time's ISO_LOCAL_TIME, and
    PostgreSQL's own output)."""
    if not us:
        return ""
    return "." + f"{us:06d}".rstrip("0")


def _java_zoned(us: int, width: int) -> str:
    """ZonedTimestamp.toIsoString of an instant: UTC, `width` fraction digits (0: as needed)."""
    days, rest = divmod(us, _DAY_US)
    y, m, d = _civil_from_days(days)
    secs, frac = divmod(rest, _US)
    clock = f"{secs // 3600:02d}:{secs // 60 % 60:02d}:{secs % 60:02d}"
    # widths above 6 only pad: PostgreSQL keeps microseconds
    tail = _fraction(frac) if width <= 0 or width > 9 else "." + f"{frac:06d}000"[:width]
    return f"{_iso_year(y)}-{m:02d}-{d:02d}T{clock}{tail}Z"


def _pg_date_text(days: int) -> str:
    y, m, d = _civil_from_days(days)
    return f"{y:04d}-{m:02d}-{d:02d}" if y > 0 else f"{1 - y:04d}-{m:02d}-{d:02d} BC"


def _pg_time_text(us: int) -> str:
    secs, frac = divmod(us, _US)
    return f"{secs // 3600:02d}:{secs // 60 % 60:02d}:{secs % 60:02d}{_fraction(frac)}"


def _pg_timestamp_text(us: int, zone: str = "") -> str:
    if us < _PG_MIN_DAY * _DAY_US or us > _PG_MAX_TS_US:
        raise ValueError(f"{us} µs since 1970 is outside PostgreSQL's timestamp range")
    days, rest = divmod(us, _DAY_US)
    y, m, d = _civil_from_days(days)
    text = f"{y if y > 0 else 1 - y:04d}-{m:02d}-{d:02d} {_pg_time_text(rest)}{zone}"
    return text if y > 0 else text + " BC"


def _sat_micros(us: int) -> int:
    """Conversions.toEpochMicros: seconds × 10⁶ saturating, plus the micros, wrapping (sic)."""
    secs, frac = divmod(us, _US)
    v = min(max(secs * _US, _I64_MIN), _I64_MAX) + frac
    return (v - _I64_MIN) % _I64 + _I64_MIN


# -- numbers ----------------------------------------------------------------------------------

def _unscaled_b64(unscaled: int) -> str:
    """Kafka Connect's Decimal: BigInteger.toByteArray (minimal two's complement), base64."""
    n = (unscaled + (unscaled < 0)).bit_length() // 8 + 1
    return base64.b64encode(unscaled.to_bytes(n, "big", signed=True)).decode()


def _b64_unscaled(text: str) -> int:
    return int.from_bytes(base64.b64decode(text), "big", signed=True)


_EXACT = Context(prec=MAX_PREC)  # moving the decimal point never rounds


def _unscaled(d: Decimal, scale: int) -> int:
    """BigDecimal.setScale(scale, HALF_UP).unscaledValue()."""
    v = d.scaleb(scale, _EXACT)
    if v != v.to_integral_value():
        v = v.quantize(Decimal(1), rounding=ROUND_HALF_UP, context=_EXACT)
    return int(v)


def _stripped(d: Decimal) -> tuple[int, int]:
    """(unscaled, scale) of BigDecimal.stripTrailingZeros with a scale of at least 0."""
    text = format(d.normalize(_EXACT), "f")
    point = text.find(".")
    if point == -1:
        return int(text), 0
    return int(text[:point] + text[point + 1:]), len(text) - point - 1


def _plain(d: Decimal) -> str:
    """BigDecimal.toPlainString of the value PostgreSQL printed (same digits, no exponent)."""
    return format(d, "f")


def _java_float(value: float) -> Any:
    """A float as Jackson writes it: non-finite ones as strings."""
    if value != value:
        return "NaN"
    if value in (math.inf, -math.inf):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def _float_back(value: Any) -> float:
    if isinstance(value, str):
        return {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}[value]
    return float(value)


def _f32(x: float) -> float:
    """The float4 PostgreSQL prints for `x`: its shortest digits (Java prints other ones)."""
    if not math.isfinite(x):
        return x
    target = struct.unpack("<f", struct.pack("<f", x))[0]
    for digits in range(1, 10):
        y = float(f"{target:.{digits}g}")
        try:
            if struct.unpack("<f", struct.pack("<f", y))[0] == target:
                return y
        except OverflowError:  # rounded past the largest float4
            continue
    return target


def _pg_float_text(x: float, float4: bool = False) -> str:
    """float4out/float8out text (shortest digits; exponent from 10^6 / 10^15, as PostgreSQL)."""
    if x != x:
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    if x == 0:
        return "-0" if math.copysign(1, x) < 0 else "0"
    sign, digits, exp = Decimal(repr(x)).as_tuple()
    assert isinstance(exp, int)
    ds = "".join(map(str, digits)).rstrip("0") or "0"
    exp += len("".join(map(str, digits))) - len(ds)
    point = len(ds) + exp  # the decimal point's place: value = 0.ds × 10^point
    e = point - 1
    if e < -4 or e >= (6 if float4 else 15):
        mant = ds[0] + ("." + ds[1:] if len(ds) > 1 else "")
        text = f"{mant}e{'-' if e < 0 else '+'}{abs(e):02d}"
    elif point <= 0:
        text = "0." + "0" * -point + ds
    elif point >= len(ds):
        text = ds + "0" * (point - len(ds))
    else:
        text = ds[:point] + "." + ds[point:]
    return "-" + text if sign else text


def _money_decimal(text: str) -> Decimal:
    """PostgresMoney.parse: no parentheses, currency sign or grouping commas."""
    negative = text[0] in "(-"
    body = text.strip("()-")
    if body and not body[0].isdigit() and body[0] != ".":
        body = body[1:]
    body = body.replace(",", "")
    return Decimal("-" + body if negative else body)


def _money_text(d: Decimal) -> str:
    """PostgreSQL's money text under lc_monetary C: -$1,234.56."""
    q = _unscaled(d, 2)
    units, cents = divmod(abs(q), 100)
    return f"{'-' if q < 0 else ''}${units:,}.{cents:02d}"


# -- intervals ----------------------------------------------------------------------------------

def _pg_interval(text: str) -> tuple[int, int, int, int, int, int, int]:
    """(years, months, days, hours, minutes, whole seconds, microseconds) as pgjdbc's PGInterval
    reads IntervalStyle postgres text (each part keeps its own sign)."""
    years = months = days = hours = minutes = 0
    seconds = 0.0
    unit_value: str | None = None
    for i, token in enumerate(text.replace("+", " ").split(), 1):
        if i & 1:
            colon = token.find(":")
            if colon == -1:
                unit_value = token
                continue
            neg = token[0] == "-"
            hours = int(token[neg:colon])
            minutes = int(token[colon + 1:colon + 3])
            second_colon = token.find(":", colon + 1)
            seconds = float(token[second_colon + 1:]) if second_colon != -1 else 0.0
            if neg:
                hours, minutes, seconds = -hours, -minutes, -seconds
            unit_value = None
        elif unit_value is not None:
            if token.startswith("year"):
                years = int(unit_value)
            elif token.startswith("mon"):
                months = int(unit_value)
            elif token.startswith("day"):
                days = int(unit_value)
    total = math.floor(seconds * _US + 0.5)  # PGInterval.setSeconds: Math.round
    whole = abs(total) // _US * (1 if total >= 0 else -1)
    return years, months, days, hours, minutes, whole, total - whole * _US


def _java_long(x: float) -> int:
    if x != x:
        return 0
    return _I64_MAX if x >= 2.0 ** 63 else _I64_MIN if x <= -(2.0 ** 63) else int(x)


def _interval_micros(text: str) -> int:
    """MicroDuration.durationMicros, in Java's double arithmetic, step for step."""
    y, mo, d, h, mi, s, us = _pg_interval(text)
    seconds = s + us / _US
    n_days = float(y * 12 + mo) * (365.25 / 12.0) + d
    return _java_long(((((n_days * 24 + h) * 60) + mi) * 60 + seconds) * 1e6 + 0)


def _interval_iso(text: str) -> str:
    """Interval.toIsoString: P<y>Y<m>M<d>DT<h>H<m>M<s>S, seconds via Double.toString."""
    y, mo, d, h, mi, s, us = _pg_interval(text)
    sec = Decimal(repr(s + us / _US))
    if sec.as_tuple().exponent < -9:  # type: ignore[operator]
        sec = sec.quantize(Decimal("1e-9"), rounding="ROUND_DOWN")
    sec_text = format(sec.normalize(), "f") if sec else "0"
    return f"P{y}Y{mo}M{d}DT{h}H{mi}M{sec_text}S"


def _pg_interval_text(months: int, days: int, us: int) -> str:
    """EncodeInterval, IntervalStyle postgres (C division: every part has its field's sign)."""
    def tdiv(a: int, b: int) -> tuple[int, int]:
        q = abs(a) // b * (1 if a >= 0 else -1)
        return q, a - q * b

    year, mon = tdiv(months, 12)
    hour, rest = tdiv(us, 3600 * _US)
    minute, rest = tdiv(rest, 60 * _US)
    sec, frac = tdiv(rest, _US)
    out: list[str] = []
    before = False
    for value, unit in ((year, "year"), (mon, "mon"), (days, "day")):
        if value:
            out.append(f"{'+' if before and value > 0 else ''}{value} {unit}{'' if value == 1 else 's'}")
            before = value < 0
    if not out or hour or minute or sec or frac:
        minus = hour < 0 or minute < 0 or sec < 0 or frac < 0
        out.append(f"{'-' if minus else '+' if before else ''}{abs(hour):02d}:{abs(minute):02d}:"
                   f"{abs(sec):02d}{_fraction(abs(frac))}")
    return " ".join(out)


def _iso_interval_back(text: str) -> str:
    """Our decoder of Interval.toIsoString: PostgreSQL's own text of the same interval."""
    date, _, clock = text[1:].partition("T")
    fields: dict[str, Decimal] = {}
    for part, units in ((date, "YMD"), (clock, "HMS")):
        num = ""
        for ch in part:
            if ch in units:
                fields[("T" if units == "HMS" else "") + ch] = Decimal(num)
                num = ""
            else:
                num += ch
    get = fields.get
    months = int(get("Y", 0)) * 12 + int(get("M", 0))
    us = ((int(get("TH", 0)) * 60 + int(get("TM", 0))) * 60) * _US + int(get("TS", Decimal(0)) * _US)
    return _pg_interval_text(months, int(get("D", 0)), us)


# -- arrays, bits, hstore -----------------------------------------------------------------------

class _Nested(int):
    """A multi-dimensional array: its outer length. Debezium sends that many nulls (for arrays of
    strings, that many Java object names such as "[Ljava.lang.String;@8fe81c6": nulls here)."""


def _pg_array(text: str) -> list[str | None] | _Nested:
    """The elements of PostgreSQL's array text (one dimension), None for NULL."""
    if text[0] == "[":  # explicit bounds: [0:1]={...}
        text = text[text.index("=") + 1:]
    body = text[1:-1]
    if not body:
        return []
    if body[0] == "{":
        depth = count = 0
        quoted = escaped = False
        for ch in body:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                quoted = not quoted
            elif not quoted and ch == "{":
                depth += 1
                count += depth == 1
            elif not quoted and ch == "}":
                depth -= 1
        return _Nested(count)
    if '"' not in body and "\\" not in body:
        return [None if item == "NULL" else item for item in body.split(",")]
    out: list[str | None] = []
    i, n = 0, len(body)
    while i <= n:
        if i < n and body[i] == '"':
            chars = []
            i += 1
            while body[i] != '"':
                if body[i] == "\\":
                    i += 1
                chars.append(body[i])
                i += 1
            out.append("".join(chars))
            i += 2  # the quote and the comma
        else:
            j = body.find(",", i)
            j = n if j == -1 else j
            item = body[i:j]
            out.append(None if item == "NULL" else item)
            i = j + 1
    return out


_QUOTE = frozenset('{}",\\ \t\n\r\v\f')


def _pg_array_text(items: list[str | None]) -> str:
    """array_out: quote an element that is empty, NULL-like, or holds a special character."""
    parts = []
    for item in items:
        if item is None:
            parts.append("NULL")
        elif item == "" or item.upper() == "NULL" or any(ch in _QUOTE for ch in item):
            parts.append('"' + item.replace("\\", "\\\\").replace('"', '\\"') + '"')
        else:
            parts.append(item)
    return "{" + ",".join(parts) + "}"


def _bits_b64(bits: str) -> str:
    """Debezium's Bits: the bit string as a little-endian BitSet (rightmost bit first)."""
    n = int(bits, 2) if bits else 0
    return base64.b64encode(n.to_bytes((n.bit_length() + 7) // 8, "little")).decode()


def _bits_back(value: str, width: int) -> str:
    n = int.from_bytes(base64.b64decode(value), "little")
    text = bin(n)[2:] if n else ""
    return text.rjust(width, "0") if width else text


def _java_string_hash(s: str) -> int:
    h = 0
    data = s.encode("utf-16-be")
    for i in range(0, len(data), 2):
        h = (31 * h + (data[i] << 8 | data[i + 1])) & 0xFFFFFFFF
    return h


def _hstore_pairs(text: str) -> list[tuple[str, str | None]]:
    """HStoreConverter.fromString: "k"=>"v", "k2"=>NULL."""
    out: list[tuple[str, str | None]] = []
    pos, n = 0, len(text)

    def quoted(at: int) -> tuple[str, int]:
        chars = []
        at += 1
        while text[at] != '"':
            if text[at] == "\\":
                at += 1
            chars.append(text[at])
            at += 1
        return "".join(chars), at

    while pos < n:
        start = text.find('"', pos)
        if start == -1:
            break
        key, end = quoted(start)
        pos = end + 3  # past '"=>'
        value: str | None
        if text[pos] == "N":
            value, pos = None, pos + 4
        else:
            value, pos = quoted(pos)
        pos += 1
        out.append((key, value))
    return out


def _java_hashmap_order(pairs: list[tuple[str, str | None]]) -> list[tuple[str, str | None]]:
    """The iteration order of a java.util.HashMap filled with `pairs` in order."""
    size = 16
    while len(pairs) > size * 3 // 4:
        size *= 2

    def bucket(key: str) -> int:
        h = _java_string_hash(key)
        return (h ^ (h >> 16)) & (size - 1)

    return sorted(pairs, key=lambda kv: bucket(kv[0]))  # sorted is stable: insertion order


def _jackson_json(pairs: list[tuple[str, str | None]]) -> str:
    text = json.dumps(dict(pairs), ensure_ascii=False, separators=(",", ":"))
    if "\\u00" in text:  # Jackson escapes control characters in upper-case hex
        text = _upper_u_escapes(text)
    return text


def _upper_u_escapes(text: str) -> str:
    out, i = [], 0
    while True:
        j = text.find("\\u00", i)
        if j == -1:
            out.append(text[i:])
            return "".join(out)
        backslashes = len(text[:j]) - len(text[:j].rstrip("\\"))
        out.append(text[i:j])
        out.append(text[j:j + 6] if backslashes % 2 else text[j:j + 4] + text[j + 4:j + 6].upper())
        i = j + 6


def _hstore_text(obj: dict[str, str | None]) -> str:
    """hstore_out: pairs in hstore's own order (key length, then bytes)."""
    def q(s: str) -> str:
        return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'

    keys = sorted(obj, key=lambda k: (len(k.encode()), k.encode()))
    return ", ".join(f"{q(k)}=>{'NULL' if obj[k] is None else q(obj[k])}" for k in keys)  # type: ignore[arg-type]


def _point(text: str) -> dict[str, Any]:
    x_text, _, y_text = text.strip("()").partition(",")
    x, y = float(x_text), float(y_text)
    wkb = base64.b64encode(struct.pack("<BIdd", 1, 1, x, y)).decode()
    return {"x": x, "y": y, "wkb": wkb, "srid": None}


# -- encoders -----------------------------------------------------------------------------------

def _identity(value: Any) -> Any:
    return value


AS_IS: Encode = _identity  # what `encoder` gives for a type whose values travel as they are


def _none(value: Any) -> None:
    return None


def _binary_encoder(mode: str) -> Callable[[bytes], str]:
    if mode == "hex":
        return bytes.hex
    if mode == "base64-url-safe":
        return lambda b: base64.urlsafe_b64encode(b).decode()
    return lambda b: base64.b64encode(b).decode()


def _bytea(text: str) -> bytes:
    return bytes.fromhex(text[2:])


def _numeric_encoder(t: _Type, modes: Modes, *, money: bool = False) -> Encode:
    """`t`'s values (Decimal; money: its text) in the decimal mode."""
    mode = modes.decimal
    special_string = {"NaN": "NAN", "Infinity": "POSITIVE_INFINITY", "-Infinity": "NEGATIVE_INFINITY"}
    variable = not money and (not t.args or (len(t.args) == 1 and t.args[0] == 0))
    scale = 2 if money else (t.args[1] if len(t.args) > 1 else 0)

    def enc(value: Any) -> Any:
        d = _money_decimal(value) if money else value
        if not d.is_finite():
            if mode == "string":
                return special_string[str(d)]
            if mode == "double":
                return _java_float(float(d))
            return None  # Debezium logs "Got a special value (NaN/Infinity)" and sends null
        if mode == "double":
            return float(d)
        if mode == "string":
            return _plain(d)
        if variable:
            unscaled, s = _stripped(d)
            return {"scale": s, "value": _unscaled_b64(unscaled)}
        return _unscaled_b64(_unscaled(d, scale))

    return enc


def _time_encoder(t: _Type, modes: Modes, micros_of: Callable[[str], int]) -> Encode:
    mode = modes.time
    millis = mode == "connect" or (mode == "adaptive" and t.precision <= 3)
    if millis:
        return lambda v: micros_of(v) // 1000
    return micros_of


def _timestamp_encoder(t: _Type, modes: Modes) -> Encode:
    millis = modes.time == "connect" or t.precision <= 3

    def enc(value: str) -> int:
        if value == "infinity":
            us = TS_INFINITY_US
        elif value == "-infinity":
            us = TS_MINUS_INFINITY_US
        else:
            us = _pg_timestamp_us(value, False)
        return us // 1000 if millis else _sat_micros(us)

    return enc


def _timestamptz_encoder(t: _Type) -> Encode:
    width = t.precision

    def enc(value: str) -> str:
        if value[-3:] == "+00" and value[4] == "-" and value[10] == " ":
            # in UTC, AD, a 4-digit year: the same digits, rearranged
            frac = value[20:-3]
            if width <= 0:
                tail = "." + frac.rstrip("0") if frac.rstrip("0") else ""
            else:
                tail = "." + frac.ljust(width, "0")[:width]
            return f"{value[:10]}T{value[11:19]}{tail}Z"
        if value == "infinity" or value == "-infinity":
            return value
        return _java_zoned(_pg_timestamp_us(value, True), width)

    if speedups is not None:  # the rearranging compiled (cdc/_speedups.c), the rest as above
        return speedups.timestamptz_encoder(width, enc)  # type: ignore[no-any-return]
    return enc


def _timetz_utc(value: str) -> str:
    clock, offset = _split_offset(value)
    us = (_pg_time_us(clock) - offset * _US) % _DAY_US
    secs, frac = divmod(us, _US)
    return f"{secs // 3600:02d}:{secs // 60 % 60:02d}:{secs % 60:02d}{_fraction(frac)}Z"


def _date_encoder(value: str) -> int:
    if value == "infinity":
        return DATE_INFINITY
    if value == "-infinity":
        return DATE_MINUS_INFINITY
    return _pg_days(value)


def _interval_encoder(modes: Modes) -> Encode:
    return _interval_iso if modes.interval == "string" else _interval_micros


def _bit_encoder(t: _Type) -> Encode:
    width = t.args[0] if t.args else (1 if t.kind == "bit" else 0)
    if width == 1:
        return lambda v: int(v, 2) != 0
    return _bits_b64


def _hstore_encoder(value: str) -> str:
    return _jackson_json(_java_hashmap_order(_hstore_pairs(value)))


def _scalar_encoder(t: _Type, modes: Modes) -> Encode:
    kind = t.kind
    if kind in ("int", "bool", "string", "unknown"):
        return _identity
    if kind in ("float4", "float8"):
        return _java_float
    if kind == "numeric":
        return _numeric_encoder(t, modes)
    if kind == "money":
        return _numeric_encoder(t, modes, money=True)
    if kind == "bytea":
        to_text = _binary_encoder(modes.binary)
        return lambda v: to_text(_bytea(v))
    if kind == "name":
        return _none
    if kind in ("bit", "varbit"):
        return _bit_encoder(t)
    if kind == "date":
        return _date_encoder
    if kind == "time":
        return _time_encoder(t, modes, _pg_time_us)
    if kind == "timetz":
        return _timetz_utc
    if kind == "timestamp":
        return _timestamp_encoder(t, modes)
    if kind == "timestamptz":
        return _timestamptz_encoder(t)
    if kind == "interval":
        return _interval_encoder(modes)
    if kind == "point":
        return _point
    if kind == "hstore":
        return _hstore_encoder
    raise ValueError(f"Debezium leaves columns of type {kind} out of its messages (see emitted())")


# Array elements come through pgjdbc's PgArray and Debezium's JDBC converters: dates, times and
# timestamps as java.sql objects (milliseconds for times; BC lost), numerics as BigDecimal (an
# array holding NaN or Infinity fails whole).

class _WholeArrayNull(Exception):
    pass


def _jdbc_date(value: str) -> int:
    if value == "infinity":
        return _JDBC_DATE_INFINITY
    if value == "-infinity":
        return _JDBC_DATE_MINUS_INFINITY
    bc = value.endswith(" BC")
    y, m, d = (value[:-3] if bc else value).split("-")
    return _days_from_civil(int(y), int(m), int(d))  # the era is lost: 44 BC is 44 AD


def _julian_as_gregorian(text: str) -> str:
    """A timestamp before 1582-10-15 as java.sql.Timestamp takes it: a Julian calendar date
    (BC kept), here rewritten as the proleptic Gregorian text of the same instant."""
    if text[0] not in "0123456789" or len(text) < 19:
        return text  # infinity
    bc = text[-3:] == " BC"
    body = text[:-3] if bc else text
    space = body.index(" ")
    y, m, d = (int(part) for part in body[:space].split("-"))
    if not bc and (y, m, d) >= (1582, 10, 15):
        return text
    y = 1 - y if bc else y
    a = (14 - m) // 12  # the Julian day number of a Julian calendar date
    yy, mm = y + 4800 - a, m + 12 * a - 3
    gy, gm, gd = _civil_from_days(d + (153 * mm + 2) // 5 + 365 * yy + yy // 4 - 32083 - 2440588)
    day = f"{gy:04d}-{gm:02d}-{gd:02d}" if gy > 0 else f"{1 - gy:04d}-{gm:02d}-{gd:02d}"
    return f"{day}{body[space:]}{' BC' if gy <= 0 else ''}"


def _element_encoder(t: _Type, modes: Modes) -> Encode:
    kind = t.kind
    if kind == "int":
        return int
    if kind == "float4" or kind == "float8":
        return lambda v: _java_float(float(v))
    if kind == "bool":
        return lambda v: v == "t"
    if kind == "numeric":
        number = _numeric_encoder(t, modes)

        def num(v: str) -> Any:
            d = Decimal(v)
            if not d.is_finite():
                raise _WholeArrayNull
            return number(d)

        return num
    if kind == "bytea":
        to_text = _binary_encoder(modes.binary)
        return lambda v: to_text(_bytea(v))
    if kind == "date":
        return _jdbc_date
    if kind == "time":
        return _time_encoder(t, modes, lambda v: _pg_time_us(v) // 1000 * 1000 % _DAY_US)
    if kind == "timetz":  # whole seconds only
        def timetz(v: str) -> str:
            clock, offset = _split_offset(v)
            secs = (_pg_time_us(clock) // _US - offset) % 86400
            return f"{secs // 3600:02d}:{secs // 60 % 60:02d}:{secs % 60:02d}Z"
        return timetz
    if kind == "timestamp":
        stamp = _timestamp_encoder(t, modes)
        return lambda v: stamp(_julian_as_gregorian(v))
    if kind == "timestamptz":
        zoned = _timestamptz_encoder(t)

        def timestamptz(v: str) -> str:
            if v == "-infinity":
                return _TSTZ_ARRAY_MINUS_INFINITY
            return zoned(v[:-3] if v[-3:] == " BC" else v)  # the era is lost

        return timestamptz
    if kind == "hstore":
        return _hstore_encoder
    return _identity  # strings


def _array_encoder(t: _Type, modes: Modes) -> Encode:
    if t.kind == "unknown":  # enums: pgjdbc cannot read the elements, Debezium sends null
        return lambda v: [] if v == "{}" else None
    element = _element_encoder(t, modes)

    def enc(value: str) -> list[Any] | None:
        items = _pg_array(value)
        if isinstance(items, _Nested):
            return [None] * items
        try:
            return [None if item is None else element(item) for item in items]
        except _WholeArrayNull:
            return None

    return enc


def encoder(pg_type: str, modes: Modes | None = None) -> Encode:
    """The JSON value Debezium's PostgreSQL connector sends for our source's `value` of a
    column of `pg_type` (None stays None). Raises ValueError for a type Debezium leaves out
    of its messages (`emitted` is False)."""
    enc = value_encoder(pg_type, modes)
    if enc is _identity:
        return enc

    def encode(value: Any) -> Any:
        return None if value is None else enc(value)

    return encode


def value_encoder(pg_type: str, modes: Modes | None = None) -> Encode:
    """`encoder` for values that are never None (a caller that passes None on itself saves a
    call per value); `AS_IS` where values travel as they are."""
    modes = modes or Modes()
    t = _parse_type(pg_type)
    if not emitted(pg_type):
        raise ValueError(f"Debezium leaves columns of type {pg_type!r} out of its messages")
    return _array_encoder(t, modes) if t.array else _scalar_encoder(t, modes)


# -- decoders -----------------------------------------------------------------------------------

def _binary_decoder(mode: str) -> Callable[[str], bytes]:
    if mode == "hex":
        return bytes.fromhex
    if mode == "base64-url-safe":
        return base64.urlsafe_b64decode
    return base64.b64decode


def _numeric_decoder(t: _Type, modes: Modes, *, money: bool = False) -> Encode:
    mode = modes.decimal
    variable = not money and (not t.args or (len(t.args) == 1 and t.args[0] == 0))
    scale = 2 if money else (t.args[1] if len(t.args) > 1 else 0)
    specials = {"NAN": "NaN", "POSITIVE_INFINITY": "Infinity", "NEGATIVE_INFINITY": "-Infinity",
                "NaN": "NaN", "Infinity": "Infinity", "-Infinity": "-Infinity"}

    def dec(value: Any) -> Decimal:
        if isinstance(value, str) and value in specials:
            return Decimal(specials[value])
        if mode == "string":
            return Decimal(value)
        if mode == "double":
            d = Decimal(repr(float(value)))
            return d if variable else Decimal(f"{_unscaled(d, scale)}E-{scale}")
        if isinstance(value, dict):
            return Decimal(f"{_b64_unscaled(value['value'])}E-{int(value['scale'])}")
        return Decimal(f"{_b64_unscaled(value)}E-{scale}")

    if money:
        return lambda v: _money_text(dec(v))
    return dec


def _time_decoder(t: _Type, modes: Modes) -> Encode:
    millis = modes.time == "connect" or (modes.time == "adaptive" and t.precision <= 3)
    return (lambda v: _pg_time_text(v * 1000)) if millis else _pg_time_text


def _timestamp_decoder(t: _Type, modes: Modes) -> Encode:
    millis = modes.time == "connect" or t.precision <= 3
    inf = (TS_INFINITY_US // 1000, TS_MINUS_INFINITY_US // 1000) if millis else (
        TS_INFINITY_US, TS_MINUS_INFINITY_US)

    def dec(value: int) -> str:
        if value == inf[0]:
            return "infinity"
        if value == inf[1]:
            return "-infinity"
        return _pg_timestamp_text(value * 1000 if millis else value)

    return dec


def _timestamptz_back(value: str) -> str:
    """"2024-05-06T05:08:09.123456Z" → PostgreSQL's text in UTC ("... 05:08:09.123456+00")."""
    if value in ("infinity", "-infinity"):
        return value
    if value[4] == "-" and value[10] == "T" and value[:4] != "0000":
        frac = value[20:-1].rstrip("0")  # AD, a 4-digit year: the same digits, rearranged
        return f"{value[:10]} {value[11:19]}{'.' + frac if frac else ''}+00"
    day, _, clock = value[:-1].partition("T")
    sign = -1 if day[0] == "-" else 1
    y, m, d = day.lstrip("+-").split("-")
    days = _days_from_civil(sign * int(y), int(m), int(d))
    if clock.count(":") == 1:
        clock += ":00"
    return _pg_timestamp_text(days * _DAY_US + _pg_time_us(clock), "+00")


def _date_back(value: int) -> str:
    if value in (DATE_INFINITY, _JDBC_DATE_INFINITY):
        return "infinity"
    if value in (DATE_MINUS_INFINITY, _JDBC_DATE_MINUS_INFINITY):
        return "-infinity"
    if not _PG_MIN_DAY <= value <= _PG_MAX_DATE_DAY:
        raise ValueError(f"day {value} since 1970 is outside PostgreSQL's date range")
    return _pg_date_text(value)


def _bit_decoder(t: _Type) -> Encode:
    width = t.args[0] if t.args else (1 if t.kind == "bit" else 0)
    if width == 1:
        return lambda v: "1" if v else "0"
    fixed = width if t.kind == "bit" else 0
    return lambda v: _bits_back(v, fixed)


def _scalar_decoder(t: _Type, modes: Modes, element: bool = False) -> Encode:
    """Back to our source's value: Python number/bool for the fast kinds, else PostgreSQL's
    text (`element`: text for every kind, as inside an array's text)."""
    kind = t.kind
    if kind == "int":
        return str if element else _identity
    if kind == "bool":
        return (lambda v: "t" if v else "f") if element else _identity
    if kind == "float8":
        return (lambda v: _pg_float_text(_float_back(v))) if element else _float_back
    if kind == "float4":
        if element:
            return lambda v: _pg_float_text(_f32(_float_back(v)), float4=True)
        return lambda v: _f32(_float_back(v))
    if kind == "numeric":
        number = _numeric_decoder(t, modes)
        return (lambda v: _plain(number(v))) if element else number
    if kind == "money":
        return _numeric_decoder(t, modes, money=True)
    if kind == "bytea":
        from_text = _binary_decoder(modes.binary)
        return lambda v: "\\x" + from_text(v).hex()
    if kind in ("bit", "varbit"):
        return _bit_decoder(t)
    if kind == "date":
        return _date_back
    if kind == "time":
        return _time_decoder(t, modes)
    if kind == "timetz":
        return lambda v: v[:-1] + "+00"
    if kind == "timestamp":
        return _timestamp_decoder(t, modes)
    if kind == "timestamptz":
        return _timestamptz_back
    if kind == "interval":
        if modes.interval == "string":
            return _iso_interval_back
        return lambda v: _pg_interval_text(0, 0, int(v))
    if kind == "point":
        return lambda v: f"({_pg_float_text(float(v['x']))},{_pg_float_text(float(v['y']))})"
    if kind == "hstore":
        return lambda v: _hstore_text(json.loads(v))
    return _identity  # strings, name, unknown


def decodes_as_is(pg_type: str, modes: Modes | None = None) -> bool:
    """Debezium's JSON value of a `pg_type` column is already our source's value (a number,
    bool or string kept as it is): its decoder does nothing, so need not run."""
    return decoder(pg_type, modes) is _identity


def decoder(pg_type: str, modes: Modes | None = None) -> Encode:
    """The value our sink writes for Debezium's JSON `value` of a column of `pg_type`: our
    source's own value where `lossless` is None (None stays None)."""
    modes = modes or Modes()
    t = _parse_type(pg_type)
    if not t.array:
        dec = _scalar_decoder(t, modes)
        if dec is _identity:
            return dec
        return lambda v: None if v is None else dec(v)
    element = _scalar_decoder(t, modes, element=True)

    def decode(value: list[Any] | None) -> str | None:
        if value is None:
            return None
        return _pg_array_text([None if v is None else element(v) for v in value])

    return decode


# -- what cannot come back ----------------------------------------------------------------------

def lossless(pg_type: str, modes: Modes | None = None) -> str | None:
    """Why values of `pg_type` in `modes` may not come back exactly through Debezium's format
    (with the fix, where a mode is one); None when every value does."""
    modes = modes or Modes()
    t = _parse_type(pg_type)
    if not emitted(pg_type):
        return f"Debezium leaves {pg_type} columns out of its messages"
    if t.array:
        element = {
            "numeric": "an array holding NaN or Infinity arrives as null",
            "date": "BC dates and infinities arrive wrong (read through JDBC)",
            "timestamp": "timestamps before 1582-10-15 arrive as Julian calendar dates (JDBC)",
            "timestamptz": "BC timestamps arrive as AD and -infinity as a year 292269055 (JDBC)",
            "time": "elements keep milliseconds only",
            "timetz": "elements keep whole seconds and the UTC time only",
            "unknown": "an array of an enum (or other user type) arrives as null",
        }.get(t.kind)
        scalar = None if t.kind in ("unknown", "date", "timestamptz") else lossless(
            pg_type[:pg_type.rindex("[")], modes)
        reasons = [r for r in (element, scalar) if r]
        reasons.append("an array of more than one dimension arrives as a list of nulls")
        return f"{pg_type}: " + "; ".join(reasons)
    kind = t.kind
    if kind in ("numeric", "money") and modes.decimal == "double":
        return f"{pg_type} as a double (decimal.handling.mode=double) loses digits: use precise or string"
    if kind == "numeric" and modes.decimal == "precise":
        trailing = "" if t.args and len(t.args) > 1 or len(t.args) == 1 and t.args[0] else (
            " and trailing zeros are dropped (1.50 arrives as 1.5)")
        return (f"{pg_type}: NaN and ±Infinity arrive as null{trailing}: "
                "use decimal.handling.mode=string")
    if kind == "interval" and modes.interval == "numeric":
        return ("interval as microseconds (interval.handling.mode=numeric) counts a month as "
                "30.4375 days: use interval.handling.mode=string")
    if kind in ("time", "timestamp") and modes.time == "connect" and t.precision > 3:
        return (f"{pg_type} keeps milliseconds only in time.precision.mode=connect: use adaptive "
                "or adaptive_time_microseconds")
    if kind == "timetz":
        return ("time with time zone arrives as the UTC time only: its offset is lost "
                "(and 24:00:00 becomes 00:00:00)")
    if kind == "varbit" and (not t.args or t.args[0] > 1):
        return f"{pg_type} loses its leading zero bits (the length of the value)"
    if kind == "name":
        return "name columns arrive as null while Debezium streams"
    return None


def placeholder(pg_type: str, modes: Modes | None = None) -> Any:
    """Debezium's value for an unchanged TOASTed column of `pg_type` (unavailable.value.placeholder
    left at its default), as read off Debezium 3.6; None where Debezium sends null."""
    modes = modes or Modes()
    t = _parse_type(pg_type)
    raw = UNAVAILABLE.encode()
    if t.array:
        if t.base in ("integer", "int4", "int", "bigint", "int8", "date"):
            return list(raw)  # the placeholder's bytes, as numbers
        if t.base in ("text", "character varying", "varchar", "character", "bpchar", "json", "jsonb"):
            return [UNAVAILABLE]
        if t.base == "uuid":
            h = bytearray(hashlib.md5(raw).digest())  # UUID.nameUUIDFromBytes
            h[6] = (h[6] & 0x0F) | 0x30
            h[8] = (h[8] & 0x3F) | 0x80
            return [str(uuid.UUID(bytes=bytes(h)))]
        if t.kind == "bytea" and modes.binary == "bytes":
            return [base64.b64encode(raw).decode()]
        return None
    if t.kind == "bytea":  # the placeholder's bytes; in hex mode its text as it is; else null
        if modes.binary == "bytes":
            return base64.b64encode(raw).decode()
        return UNAVAILABLE if modes.binary == "hex" else None
    if t.kind == "hstore":
        return json.dumps({UNAVAILABLE: UNAVAILABLE}, separators=(",", ":"))
    return UNAVAILABLE
