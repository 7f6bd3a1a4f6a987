"""cdc/transport/debezium_values.py without services: Debezium's values for our source's
values (the examples were read off Debezium 3.6.1: tests/cdc/kafka/
test_debezium_values_vs_debezium.py), round trips back to PostgreSQL's own text, the lossy
cases, the modes."""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
import struct
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cdc.transport.debezium_values import (
    UNAVAILABLE,
    Modes,
    decoder,
    emitted,
    encoder,
    lossless,
    placeholder,
)

STRING = Modes(decimal="string", time="connect", binary="hex", interval="string")
EPOCH = dt.datetime(1970, 1, 1)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unscaled(n: int) -> str:
    return b64(n.to_bytes((n + (n < 0)).bit_length() // 8 + 1, "big", signed=True))


# (pg_type, our source's value, modes, Debezium's JSON value)
SEEN = [
    ("numeric(10,2)", Decimal("12.34"), Modes(), "BNI="),
    ("numeric(10,2)", Decimal("-0.01"), Modes(), "/w=="),
    ("numeric(10,2)", Decimal("NaN"), Modes(), None),
    ("numeric(10,2)", Decimal("NaN"), STRING, "NAN"),
    ("numeric", Decimal("1.5000"), Modes(), {"scale": 1, "value": "Dw=="}),
    ("numeric", Decimal("0.000000000000000000001"), Modes(), {"scale": 21, "value": "AQ=="}),
    ("numeric", Decimal("Infinity"), Modes(), None),
    ("numeric", Decimal("Infinity"), STRING, "POSITIVE_INFINITY"),
    ("numeric", Decimal("1.5000"), STRING, "1.5000"),
    ("numeric", Decimal("0.000000000000000000001"), STRING, "0.000000000000000000001"),
    ("numeric", Decimal("1E-21"), Modes(decimal="double"), 1e-21),
    ("numeric(5,0)", Decimal("NaN"), Modes(decimal="double"), "NaN"),
    ("numeric(5,0)", Decimal("12345"), Modes(decimal="double"), 12345.0),
    ("money", "$12.35", Modes(), "BNM="),
    ("money", "-$92,233,720,368,547,758.08", Modes(), "gAAAAAAAAAA="),
    ("money", "-$92,233,720,368,547,758.08", STRING, "-92233720368547758.08"),
    ("real", 1.5, Modes(), 1.5),
    ("real", math.nan, Modes(), "NaN"),
    ("double precision", -math.inf, Modes(), "-Infinity"),
    ("bigint", 9223372036854775807, Modes(), 9223372036854775807),
    ("boolean", True, Modes(), True),
    ("jsonb", '{"a": {"k": [1.0, "t", null]}, "z": 1}', Modes(), '{"a": {"k": [1.0, "t", null]}, "z": 1}'),
    ("json", "1e400", Modes(), "1e400"),
    ("character(3)", "ab ", Modes(), "ab "),
    ("mood", "happy", Modes(), "happy"),
    ("name", "nm", Modes(), None),
    ("bytea", "\\x00ff", Modes(), "AP8="),
    ("bytea", "\\x", Modes(), ""),
    ("bytea", "\\x5c0a09", STRING, "5c0a09"),
    ("bytea", "\\xfbff", Modes(binary="base64-url-safe"), "-_8="),
    ("bit(3)", "101", Modes(), "BQ=="),
    ("bit(3)", "000", Modes(), ""),
    ("bit(1)", "1", Modes(), True),
    ("bit varying", "1011001", STRING, "WQ=="),
    ("bit varying", "00000001", Modes(), "AQ=="),
    ("date", "2024-02-29", Modes(), 19782),
    ("date", "4713-01-01 BC", Modes(), -2440550),
    ("date", "infinity", Modes(), -2147472692),
    ("date", "-infinity", Modes(), -2147472691),
    ("time without time zone", "13:14:15.123456", Modes(), 47655123456),
    ("time without time zone", "13:14:15.123456", STRING, 47655123),
    ("time without time zone", "24:00:00", Modes(), 86400000000),
    ("time(3) without time zone", "13:14:15.123", Modes(), 47655123),
    ("time(3) without time zone", "13:14:15.123", Modes(time="adaptive_time_microseconds"), 47655123000),
    ("time with time zone", "13:14:15.5+02", Modes(), "11:14:15.5Z"),
    ("time(3) with time zone", "13:14:15.123-05:30", Modes(), "18:44:15.123Z"),
    ("time with time zone", "24:00:00+00", Modes(), "00:00:00Z"),
    ("timestamp without time zone", "2024-05-06 07:08:09.5", Modes(), 1714979289500000),
    ("timestamp without time zone", "2024-05-06 07:08:09.5", STRING, 1714979289500),
    ("timestamp without time zone", "-infinity", Modes(), -9223372036832400000),
    ("timestamp without time zone", "294276-12-31 23:59:59.999999", Modes(), -9223372036853775810),
    ("timestamp(3) without time zone", "infinity", Modes(), 9223372036825200),
    ("timestamp(3) without time zone", "0001-01-01 00:00:00 BC", Modes(), -62167219200000),
    ("timestamp with time zone", "2024-05-06 05:08:09.123456+00", Modes(), "2024-05-06T05:08:09.123456Z"),
    ("timestamp with time zone", "1970-01-01 00:00:00+00", Modes(), "1970-01-01T00:00:00.000000Z"),
    ("timestamp with time zone", "0044-03-15 10:00:00+00 BC", Modes(), "-0043-03-15T10:00:00.000000Z"),
    ("timestamp with time zone", "294276-12-31 23:59:59.999999+00", Modes(), "+294276-12-31T23:59:59.999999Z"),
    ("timestamp with time zone", "-infinity", Modes(), "-infinity"),
    ("timestamp(3) with time zone", "0044-03-15 10:00:00.5+00 BC", Modes(), "-0043-03-15T10:00:00.500Z"),
    ("timestamp(0) with time zone", "2024-05-06 05:08:10+00", Modes(), "2024-05-06T05:08:10Z"),
    ("interval", "1 year 2 mons 3 days 04:05:06.789", Modes(), 37091106789000),
    ("interval", "-1 days +02:03:00", Modes(), -79020000000),
    ("interval", "-1 years -2 mons +3 days -04:05:06.000001", Modes(), -36572706000001),
    ("interval", "1 year 2 mons 3 days 04:05:06.789", STRING, "P1Y2M3DT4H5M6.789S"),
    ("interval", "-1 days +02:03:00", STRING, "P0Y0M-1DT2H3M0S"),
    ("interval", "-1 years -2 mons +3 days -04:05:06.000001", STRING, "P-1Y-2M3DT-4H-5M-6.000001S"),
    ("interval", "00:00:00", STRING, "P0Y0M0DT0H0M0S"),
    ("integer[]", "{1,NULL,3}", Modes(), [1, None, 3]),
    ("integer[]", "{{1,2},{3,4}}", Modes(), [None, None]),
    ("text[]", '{"a b",NULL,"q\\"uote"}', Modes(), ["a b", None, 'q"uote']),
    ("numeric[]", "{1.50,NULL,0.00000000000000000001}", Modes(),
     [{"scale": 1, "value": "Dw=="}, None, {"scale": 20, "value": "AQ=="}]),
    ("numeric[]", "{1.50,NaN,0.000}", STRING, None),
    ("numeric(5,2)[]", "{1.50,NULL,-999.99}", Modes(), ["AJY=", None, "/nlh"]),
    ("mood[]", "{happy,NULL}", Modes(), None),
    ("date[]", '{"4713-01-01 BC",infinity}', Modes(), [1001860, -622191234]),
    ("time without time zone[]", "{13:14:15.123456,24:00:00}", Modes(), [47655123000, 0]),
    ("time with time zone[]", "{13:14:15.123456+02}", Modes(), ["11:14:15Z"]),
    ("timestamp with time zone[]", "{infinity,-infinity}", Modes(), ["infinity", "+292269055-12-02T23:00:00.000000Z"]),
    ("bytea[]", '{"\\\\x00ff",NULL,"\\\\x"}', Modes(), ["AP8=", None, ""]),
    ("timestamp without time zone[]", '{"0044-03-15 10:00:00 BC","1000-01-01 00:00:00","4713-01-01 00:00:00 BC"}',
     Modes(), [-63517960800000000, -30609792000000000, -210866803200000000]),  # Julian calendar dates
    ("timestamp with time zone[]", '{"0044-03-15 10:00:00+00 BC","1000-01-01 00:00:00+00"}', Modes(),
     ["0044-03-15T10:00:00.000000Z", "1000-01-01T00:00:00.000000Z"]),  # the era lost
    ("real[]", "{1.5,NULL,NaN}", Modes(), [1.5, None, "NaN"]),
    ("point", "(1.5,-2)", Modes(), {"x": 1.5, "y": -2.0, "wkb": "AQEAAAAAAAAAAAD4PwAAAAAAAADA", "srid": None}),
    ("hstore", '"a"=>"1", "b"=>NULL', Modes(), '{"a":"1","b":null}'),
    ("hstore", "", Modes(), "{}"),
    ("oid", 4294967295, Modes(), 4294967295),
]


@pytest.mark.parametrize(("pg_type", "value", "modes", "expected"), SEEN)
def test_values_are_debeziums(pg_type: str, value: Any, modes: Modes, expected: Any) -> None:
    assert json.dumps(encoder(pg_type, modes)(value)) == json.dumps(expected)


@pytest.mark.parametrize(("pg_type", "value", "modes", "expected"), SEEN)
def test_lossless_values_decode_to_the_source_value(pg_type: str, value: Any, modes: Modes,
                                                    expected: Any) -> None:
    if lossless(pg_type, modes) is None and value != "294276-12-31 23:59:59.999999":  # overflowed
        assert repr(decoder(pg_type, modes)(expected)) == repr(value)


def test_nulls_stay_null() -> None:
    for pg_type in ("integer", "numeric", "bytea", "date", "text[]", "interval", "hstore"):
        assert encoder(pg_type)(None) is None
        assert decoder(pg_type)(None) is None


def test_what_comes_back_from_lossy_modes() -> None:
    assert decoder("numeric")({"scale": 1, "value": "Dw=="}) == Decimal("1.5")  # was 1.5000
    assert decoder("interval")(37091106789000) == "10303:05:06.789"  # months became hours
    assert decoder("time with time zone")("11:14:15.5Z") == "11:14:15.5+00"
    assert decoder("bit varying")("AQ==") == "1"  # was 00000001
    assert decoder("integer[]")([None, None]) == "{NULL,NULL}"
    assert decoder("date")(-622191234) == "infinity"  # Debezium's snapshot value
    with pytest.raises(ValueError, match="outside PostgreSQL's timestamp range"):
        decoder("timestamp")(-9223372036853775810)  # 294276-12-31 overflowed


def test_a_real_comes_back_with_postgresqls_digits() -> None:
    """Java prints the float4 1e-45 as 1.4E-45: the same float, decoded to PostgreSQL's digits."""
    assert decoder("real")(1.4e-45) == 1e-45
    assert decoder("real")(3.4028235e38) == 3.4028235e38
    assert decoder("real[]")([1.4e-45, None, "NaN", 100000.0, 1000000.0]) == "{1e-45,NULL,NaN,100000,1e+06}"
    assert decoder("double precision[]")([1e15, 1e14, -0.0, 5e-324, 0.1]) == (
        "{1e+15,100000000000000,-0,5e-324,0.1}")


# -- round trips of generated values ----------------------------------------------------------

def pg_fraction(us: int) -> str:
    return "." + f"{us:06d}".rstrip("0") if us else ""


@given(st.integers(-(10 ** 8) + 1, 10 ** 8 - 1), st.integers(0, 8))
def test_numeric_with_a_scale_round_trips_in_precise_and_string_modes(unscaled_value: int, scale: int) -> None:
    value = Decimal(f"{unscaled_value}E-{scale}")
    pg_type = f"numeric({8 + scale},{scale})"
    assert encoder(pg_type)(value) == unscaled(unscaled_value)
    for modes in (Modes(), STRING):
        assert repr(decoder(pg_type, modes)(encoder(pg_type, modes)(value))) == repr(value)


@given(st.decimals(allow_nan=True, allow_infinity=True, places=None).filter(lambda d: abs(d.adjusted()) < 400))
def test_unconstrained_numeric_round_trips_as_a_string_and_loses_trailing_zeros_precisely(value: Decimal) -> None:
    if value.is_nan():
        value = Decimal("NaN")  # PostgreSQL has no -NaN, nor signalling NaN
    elif value.is_finite():
        value = abs(value) if value.is_zero() else Decimal(format(value, "f"))  # as PostgreSQL prints
    assert repr(decoder("numeric", STRING)(encoder("numeric", STRING)(value))) == repr(value)
    precise = encoder("numeric")(value)
    if not value.is_finite():
        assert precise is None
    else:
        assert decoder("numeric")(precise) == value  # equal, maybe with fewer zeros


@given(st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31, 23, 59, 59, 999999)))
def test_timestamps_are_micros_since_the_epoch_and_round_trip(when: dt.datetime) -> None:
    text = when.strftime("%Y-%m-%d %H:%M:%S").rjust(19, "0") + pg_fraction(when.microsecond)
    if when.year < 1000:
        text = f"{when.year:04d}" + text[text.index("-"):]
    micros = (when - EPOCH) // dt.timedelta(microseconds=1)
    pg_type = "timestamp without time zone"
    assert encoder(pg_type)(text) == micros
    assert decoder(pg_type)(micros) == text
    millis_type = "timestamp(3) without time zone"
    if when.microsecond % 1000 == 0:
        for modes in (Modes(), STRING):
            assert encoder(millis_type, modes)(text) == micros // 1000
            assert decoder(millis_type, modes)(micros // 1000) == text


@given(st.integers(1, 4713), st.integers(1, 12), st.integers(1, 28), st.integers(0, 86_399_999_999))
def test_bc_timestamps_and_dates_round_trip(year: int, month: int, day: int, us: int) -> None:
    clock = dt.time(us // 3_600_000_000, us // 60_000_000 % 60, us // 1_000_000 % 60)
    text = f"{year:04d}-{month:02d}-{day:02d} {clock:%H:%M:%S}{pg_fraction(us % 1_000_000)} BC"
    for pg_type in ("timestamp without time zone", "timestamp with time zone"):
        source = text.replace(" BC", "+00 BC") if "with time zone" in pg_type else text
        assert decoder(pg_type)(encoder(pg_type)(source)) == source
    date = f"{year:04d}-{month:02d}-{day:02d} BC"
    assert decoder("date")(encoder("date")(date)) == date


@given(st.datetimes(min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30)),
       st.integers(-15 * 60, 15 * 60), st.sampled_from([None, 0, 3, 6]))
def test_timestamptz_arrive_in_utc_and_read_back_as_the_same_instant(when: dt.datetime, offset_min: int,
                                                                      precision: int | None) -> None:
    if precision is not None:
        when = when.replace(microsecond=when.microsecond // 10 ** (6 - precision) * 10 ** (6 - precision))
    sign = "-" if offset_min < 0 else "+"
    zone = f"{sign}{abs(offset_min) // 60:02d}" + (f":{abs(offset_min) % 60:02d}" if offset_min % 60 else "")
    text = f"{when.year:04d}-{when:%m-%d %H:%M:%S}{pg_fraction(when.microsecond)}{zone}"
    utc = when - dt.timedelta(minutes=offset_min)
    pg_type = "timestamp with time zone" if precision is None else f"timestamp({precision}) with time zone"
    width = 6 if precision is None else precision
    fraction = f".{utc.microsecond:06d}"[:width + 1] if width else ""
    expected = f"{utc.year:04d}-{utc:%m-%dT%H:%M:%S}{fraction}Z"
    assert encoder(pg_type)(text) == expected
    assert decoder(pg_type)(expected) == f"{utc.year:04d}-{utc:%m-%d %H:%M:%S}{pg_fraction(utc.microsecond)}+00"


@given(st.dates(min_value=dt.date(1, 1, 1)))
def test_dates_are_days_since_1970(day: dt.date) -> None:
    text = f"{day.year:04d}-{day:%m-%d}"
    assert encoder("date")(text) == (day - EPOCH.date()).days
    assert decoder("date")(encoder("date")(text)) == text


@given(st.integers(0, 86_400_000_000))
def test_times_round_trip(us: int) -> None:
    text = f"{us // 3_600_000_000:02d}:{us // 60_000_000 % 60:02d}:{us // 1_000_000 % 60:02d}" + pg_fraction(us % 1_000_000)
    pg_type = "time without time zone"
    assert decoder(pg_type)(encoder(pg_type)(text)) == text
    assert encoder(pg_type, STRING)(text) == us // 1000  # connect: milliseconds
    assert encoder(pg_type, Modes(time="adaptive_time_microseconds"))(text) == us


def pg_interval(months: int, days: int, us: int) -> str:
    """PostgreSQL's interval text, IntervalStyle postgres."""
    year, mon = int(months / 12), months - int(months / 12) * 12
    parts, before = [], False
    for value, unit in ((year, "year"), (mon, "mon"), (days, "day")):
        if value:
            parts.append(f"{'+' if before and value > 0 else ''}{value} {unit}{'' if value == 1 else 's'}")
            before = value < 0
    if not parts or us:
        a = abs(us)
        sign = "-" if us < 0 else "+" if before else ""
        parts.append(f"{sign}{a // 3_600_000_000:02d}:{a // 60_000_000 % 60:02d}:{a // 1_000_000 % 60:02d}"
                     + pg_fraction(a % 1_000_000))
    return " ".join(parts)


@given(st.integers(-(2 ** 31) + 1, 2 ** 31 - 1), st.integers(-(2 ** 31) + 1, 2 ** 31 - 1),
       st.integers(-(2 ** 31 - 1) * 3_600_000_000, (2 ** 31 - 1) * 3_600_000_000))
def test_intervals_round_trip_as_iso_strings(months: int, days: int, us: int) -> None:
    text = pg_interval(months, days, us)
    assert decoder("interval", STRING)(encoder("interval", STRING)(text)) == text


@given(st.integers(-(10 ** 12), 10 ** 12))
def test_interval_microseconds_of_a_time_span_are_within_one(us: int) -> None:
    """Debezium computes in doubles and truncates: 4.194303 s arrives as 4194302 µs."""
    text = pg_interval(0, 0, us)
    assert abs(encoder("interval")(text) - us) <= 1
    assert decoder("interval")(us) == text
    assert encoder("interval")("00:00:04.194303") == 4194302
    assert encoder("interval")("1 mon") == 2629800000000  # 30.4375 days


@given(st.binary(max_size=64), st.sampled_from(["bytes", "base64", "hex", "base64-url-safe"]))
def test_bytea_round_trips_in_every_binary_mode(data: bytes, mode: str) -> None:
    text = "\\x" + data.hex()
    modes = Modes(binary=mode)
    sent = encoder("bytea", modes)(text)
    expected = {"hex": data.hex(), "base64-url-safe": base64.urlsafe_b64encode(data).decode()}.get(mode, b64(data))
    assert sent == expected
    assert decoder("bytea", modes)(sent) == text


def pg_array(items: list[str | None]) -> str:
    def one(item: str | None) -> str:
        if item is None:
            return "NULL"
        if item == "" or item.upper() == "NULL" or any(c in item for c in '{}",\\ \t\n\r\v\f'):
            return '"' + item.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return item
    return "{" + ",".join(one(i) for i in items) + "}"


@given(st.lists(st.none() | st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\0"))))
def test_text_arrays_round_trip(items: list[str | None]) -> None:
    text = pg_array(items)
    assert encoder("text[]")(text) == items
    assert decoder("text[]")(encoder("text[]")(text)) == text


@given(st.lists(st.none() | st.integers(-(2 ** 63), 2 ** 63 - 1)))
def test_integer_arrays_round_trip(items: list[int | None]) -> None:
    text = pg_array([None if i is None else str(i) for i in items])
    assert encoder("bigint[]")(text) == items
    assert decoder("bigint[]")(items) == text


@given(st.floats(width=32))
def test_reals_round_trip_through_javas_digits(value: float) -> None:
    source = decoder("real")(value)  # PostgreSQL's shortest digits of the float4
    assert struct.pack("<f", source) == struct.pack("<f", value)
    sent = encoder("real")(source)
    back = decoder("real")(sent)
    assert repr(back) == repr(source)


@given(st.text("01", max_size=40))
def test_fixed_bits_round_trip_and_varying_bits_lose_leading_zeros(bits: str) -> None:
    if len(bits) > 1:
        assert decoder(f"bit({len(bits)})")(encoder(f"bit({len(bits)})")(bits)) == bits
        assert decoder("bit varying")(encoder("bit varying")(bits)) == bits.lstrip("0")


@given(st.integers(-(2 ** 63), 2 ** 63 - 1))
def test_money_round_trips_as_c_locale_text(cents: int) -> None:
    text = f"{'-' if cents < 0 else ''}${abs(cents) // 100:,}.{abs(cents) % 100:02d}"
    for modes in (Modes(), STRING):
        assert decoder("money", modes)(encoder("money", modes)(text)) == text


@given(st.dictionaries(st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\0"), max_size=5),
                       st.none() | st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\0"))))
def test_hstore_arrives_as_its_json_and_round_trips(pairs: dict[str, str | None]) -> None:
    def q(s: str) -> str:
        return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'
    keys = sorted(pairs, key=lambda k: (len(k.encode()), k.encode()))
    text = ", ".join(f"{q(k)}=>{'NULL' if pairs[k] is None else q(pairs[k])}" for k in keys)  # type: ignore[arg-type]
    sent = encoder("hstore")(text)
    assert json.loads(sent) == pairs
    assert decoder("hstore")(sent) == text


def test_hstore_keys_come_in_java_hashmap_order() -> None:
    # String.hashCode modulo 16 buckets: "a" 97 -> 1, "b" 98 -> 2, "k10" 104394 -> 10, "k9" 3374 -> 14
    sent = encoder("hstore")('"a"=>"1", "b"=>"2", "k9"=>"\x1f", "k10"=>"x"')
    assert sent == '{"a":"1","b":"2","k10":"x","k9":"\\u001F"}'  # Jackson's upper-case escape


# -- modes, lossless, emitted, placeholders ----------------------------------------------------

def test_modes_refuse_unknown_values_naming_the_option() -> None:
    with pytest.raises(ValueError, match=r"decimal \(Debezium's decimal.handling.mode\) = 'exact' "
                                         r"is not one of precise, double, string"):
        Modes(decimal="exact")
    with pytest.raises(ValueError, match="time.precision.mode.*adaptive, adaptive_time_microseconds, connect"):
        Modes(time="micro")
    with pytest.raises(ValueError, match="binary.handling.mode.*bytes, base64, hex, base64-url-safe"):
        Modes(binary="b64")
    with pytest.raises(ValueError, match="interval.handling.mode.*numeric, string"):
        Modes(interval="iso")
    with pytest.raises(TypeError):
        Modes("string")  # type: ignore[misc]
    assert STRING.properties() == {"decimal.handling.mode": "string", "time.precision.mode": "connect",
                                   "binary.handling.mode": "hex", "interval.handling.mode": "string"}


@pytest.mark.parametrize("pg_type", [
    "integer", "bigint", "smallint", "boolean", "real", "double precision", "text", "character varying(20)",
    "character(3)", "uuid", "json", "jsonb", "xml", "tsvector", "inet", "cidr", "macaddr", "money",
    "bytea", "bit(3)", "bit(1)", "date", "time without time zone", "time(3) without time zone",
    "timestamp without time zone", "timestamp(3) without time zone", "timestamp with time zone",
    "hstore", "mood", "int4range",
])
def test_lossless_types_in_default_modes(pg_type: str) -> None:
    assert lossless(pg_type) is None


@pytest.mark.parametrize(("pg_type", "modes", "words"), [
    ("numeric(10,2)", Modes(), ["NaN and ±Infinity arrive as null", "decimal.handling.mode=string"]),
    ("numeric", Modes(), ["trailing zeros are dropped", "decimal.handling.mode=string"]),
    ("numeric", Modes(decimal="double"), ["loses digits", "use precise or string"]),
    ("money", Modes(decimal="double"), ["loses digits"]),
    ("interval", Modes(), ["30.4375 days", "interval.handling.mode=string"]),
    ("time without time zone", STRING, ["milliseconds only", "adaptive"]),
    ("timestamp without time zone", STRING, ["milliseconds only"]),
    ("time with time zone", Modes(), ["offset is lost"]),
    ("bit varying", Modes(), ["leading zero bits"]),
    ("name", Modes(), ["null while Debezium streams"]),
    ("integer[]", Modes(), ["more than one dimension"]),
    ("numeric[]", STRING, ["NaN or Infinity arrives as null", "more than one dimension"]),
    ("date[]", Modes(), ["BC dates and infinities"]),
    ("mood[]", Modes(), ["enum"]),
    ("tsquery", Modes(), ["leaves tsquery columns out"]),
    ("interval[]", STRING, ["leaves interval[] columns out"]),
])
def test_lossy_types_say_why_and_the_fix(pg_type: str, modes: Modes, words: list[str]) -> None:
    reason = lossless(pg_type, modes)
    assert reason is not None
    for word in words:
        assert word in reason


@pytest.mark.parametrize(("pg_type", "modes"), [
    ("numeric(10,2)", STRING), ("numeric", STRING), ("interval", STRING),
    ("time(3) without time zone", STRING), ("timestamp(3) without time zone", STRING),
    ("time without time zone", Modes(time="adaptive_time_microseconds")),
])
def test_modes_fix_what_they_say(pg_type: str, modes: Modes) -> None:
    assert lossless(pg_type, modes) is None


def test_types_debezium_leaves_out() -> None:
    for pg_type in ("tsquery", "pg_lsn", "box", "interval[]", "money[]", "xml[]", "bit varying[]", "point[]"):
        assert not emitted(pg_type)
        with pytest.raises(ValueError, match="out of its messages"):
            encoder(pg_type)
    for pg_type in ("integer[]", "mood[]", "text", "point", "character varying(5)[]"):
        assert emitted(pg_type)


def test_unchanged_toasted_values_are_debeziums_placeholder() -> None:
    assert UNAVAILABLE == "__debezium_unavailable_value"
    assert placeholder("text") == placeholder("jsonb") == placeholder("xml") == UNAVAILABLE
    assert placeholder("bytea") == b64(UNAVAILABLE.encode())  # the placeholder's bytes
    assert placeholder("bytea", STRING) == UNAVAILABLE  # hex mode: its text as it is
    assert placeholder("bytea", Modes(binary="base64")) is None
    assert placeholder("bytea", Modes(binary="base64-url-safe")) is None
    assert placeholder("integer[]") == placeholder("bigint[]") == placeholder("date[]") == list(UNAVAILABLE.encode())
    assert placeholder("text[]") == [UNAVAILABLE]
    assert placeholder("uuid[]") == ["b68a35a7-17ad-35b3-af2a-ae46edb4545a"]
    assert placeholder("bytea[]") == [b64(UNAVAILABLE.encode())]
    assert placeholder("bytea[]", STRING) is None
    assert placeholder("numeric[]") is None
    assert placeholder("hstore") == '{"__debezium_unavailable_value":"__debezium_unavailable_value"}'
