"""The event model: Debezium envelope, JSON round trip, converters."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest

from cdc import convert
from cdc.events import ChangeEvent, Position, lsn_int, lsn_str


def test_envelope_is_debezium_shaped_and_round_trips() -> None:
    ev = ChangeEvent(op="u", table="catalog_product", key={"id": 7}, before=None,
                     after={"id": 7, "price": Decimal("1.10"), "at": dt.datetime(2026, 1, 2, 3, 4, 5)},
                     position=Position(0x16B374D848, 3), ts_ms=1700000000000, tx_id=42, db="shop",
                     schema="public", unchanged=("description",))
    env = json.loads(ev.to_json())
    assert set(env) == {"before", "after", "source", "op", "ts_ms"}
    assert env["op"] == "u" and env["after"]["price"] == "1.10"
    assert {"db", "schema", "table", "lsn", "txId", "ts_ms", "snapshot"} <= set(env["source"])
    back = ChangeEvent.from_json(ev.to_json(), ev.key_json())
    assert back.position == ev.position and back.key == {"id": 7} and back.unchanged == ("description",)
    assert json.loads(ev.key_json()) == {"id": 7}


def test_positions_order_within_a_transaction() -> None:
    assert Position(10, 2) < Position(10, 3) < Position(11, 1)
    assert lsn_str(0x16B374D848) == "16/B374D848" and lsn_int("16/B374D848") == 0x16B374D848


def test_bad_op_is_refused() -> None:
    with pytest.raises(ValueError):
        ChangeEvent(op="x", table="t", key={}, before=None, after=None, position=Position(1, 1))


def test_converters() -> None:
    assert convert.decimal_to_cents(Decimal("19.99")) == 1999
    assert convert.decimal_to_cents("0.005") == 1  # half up
    assert convert.cents_to_decimal(1999) == Decimal("19.99")
    assert convert.to_bool("t") is True and convert.to_bool(0) is False
    with pytest.raises(ValueError):
        convert.decimal_to_cents("abc")
    with pytest.raises(ValueError):
        convert.decimal_to_cents(Decimal("NaN"))
