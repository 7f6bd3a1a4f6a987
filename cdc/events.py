"""The one event model every source emits and every transport and sink carries.

An event is a row change in the Debezium envelope (``before``, ``after``, ``source``, ``op``,
``ts_ms``) so consumers written for Debezium read it unchanged. ``op`` is one of

    c  insert        u  update        d  delete        t  truncate
    r  read: a row copied by a snapshot (``source.snapshot`` is "true"), or a row-less
       snapshot marker (``after`` None) whose ``snapshot`` says what it marks:
         "start"  a re-copy of the table was requested: it is copying from the beginning
         "range"  the chunk covers source keys in ``extent`` (after, upto]; target rows in
                  that range whose key is not in ``extent["keep"]`` are gone from the source
         "last"   the table's copy is done
    m  a logical message (Debezium's op): no row, only a position the sink records, so a
       source may acknowledge past it

Every event also has a ``key`` (the primary-key columns of the source row) and a
``position``: ``(commit LSN, index within the transaction)`` for PostgreSQL, ``(changelog
id, 0)`` for SQLite. Positions are totally ordered within a stream and are what sinks store
to make replay idempotent. ``last`` marks the final event of a source transaction: sinks
commit only there, so a target never shows half a source transaction.

Columns whose value the source could not see (PostgreSQL's unchanged TOASTed values) are
simply absent from ``after``: a sink leaves them as they are. In the JSON envelope they are
listed under ``source.unchanged``; on Kafka they also hold Debezium's placeholder, which the
apply end drops by that list (cdc/transport/kafka_capture.py), never by its value. A change of the key is a ``d`` of the old key
and a ``c`` of the new one; when that ``c`` lacks unchanged columns, it comes first and
carries the old key in ``before``, so a sink can take the missing values from the old row.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, NamedTuple

OPS = frozenset("curdtm")
CONNECTOR = "strangler"


class Position(NamedTuple):
    """Where an event sits in its stream; compares as a tuple."""

    lsn: int
    seq: int  # index within the source transaction (1-based; 0: none)

    def __str__(self) -> str:
        return f"{lsn_str(self.lsn)}#{self.seq}"


ZERO = Position(0, 0)


def lsn_str(lsn: int) -> str:
    """PostgreSQL's text form of an LSN: ``16/B374D848``."""
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def lsn_int(text: str) -> int:
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) | int(low, 16)


@dataclass(slots=True)
class ChangeEvent:
    """One row change (or snapshot read) of one source table."""

    op: str
    table: str  # source table name, unqualified
    key: dict[str, Any]
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    position: Position
    ts_ms: int = 0  # when the source committed it (0: unknown)
    last: bool = True  # last event of its source transaction
    db: str = ""
    schema: str = ""
    tx_id: int | None = None
    snapshot: str = "false"  # "true" | "start" | "range" | "last" for op "r"
    unchanged: tuple[str, ...] = field(default_factory=tuple)  # unseen TOAST columns
    extent: dict[str, Any] | None = None  # a "range" marker's {"after", "upto", "keep"}

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise ValueError(f"op must be one of c/u/d/r/t/m, not {self.op!r}")

    def to_envelope(self) -> dict[str, Any]:
        """The Debezium envelope (payload part), plus position fields under ``source``."""
        env: dict[str, Any] = {
            "before": self.before,
            "after": self.after,
            "source": {
                "connector": CONNECTOR,
                "db": self.db,
                "schema": self.schema,
                "table": self.table,
                "lsn": self.position.lsn,
                "index": self.position.seq,
                "txId": self.tx_id,
                "ts_ms": self.ts_ms,
                "snapshot": self.snapshot,
                "last": self.last,
                "unchanged": list(self.unchanged),
            },
            "op": self.op,
            "ts_ms": self.ts_ms,
        }
        if self.extent is not None:
            env["source"]["extent"] = self.extent
        return env

    def to_json(self) -> bytes:
        return json.dumps(self.to_envelope(), default=json_default, separators=(",", ":")).encode()

    def key_json(self) -> bytes:
        """The message key: the primary-key columns as compact JSON (sorted)."""
        return json.dumps(self.key, default=json_default, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_envelope(cls, env: dict[str, Any], key: dict[str, Any]) -> ChangeEvent:
        src = env["source"]
        return cls(
            op=env["op"], table=src["table"], key=key, before=env.get("before"),
            after=env.get("after"), position=Position(int(src["lsn"]), int(src.get("index", 0))),
            ts_ms=int(src.get("ts_ms") or env.get("ts_ms") or 0), last=bool(src.get("last", True)),
            db=src.get("db", ""), schema=src.get("schema", ""), tx_id=src.get("txId"),
            snapshot=str(src.get("snapshot", "false")), unchanged=tuple(src.get("unchanged") or ()),
            extent=src.get("extent"),
        )

    @classmethod
    def from_json(cls, value: bytes | str, key: bytes | str | None = None) -> ChangeEvent:
        """Inverse of :meth:`to_json` (values come back as JSON types; sinks coerce them)."""
        env = json.loads(value, parse_float=Decimal)
        key_obj = json.loads(key, parse_float=Decimal) if key else {}
        return cls.from_envelope(env, key_obj)


def json_default(value: Any) -> Any:
    """JSON for the value types sources produce, as text PostgreSQL reads back exactly.

    Numbers keep their exact text; bytes become PostgreSQL's hex form ``\\x00ff`` (a bytea
    column takes it as it is; other sinks decode it by the column's type); a timedelta an
    ISO 8601 duration (never float seconds, which an interval column refuses). PostgreSQL
    sources send the other types as their text already.
    """
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "\\x" + bytes(value).hex()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dt.timedelta):
        return f"P{value.days}DT{value.seconds}.{value.microseconds:06d}S"
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def copy_progress(prev: tuple[str, list[Any] | None, int] | None, ev: ChangeEvent,
                  key: tuple[str, ...]) -> tuple[str, list[Any] | None, int]:
    """(state, last key copied, rows copied) of `ev`'s table after snapshot event `ev`
    (op ``r``), from `prev` (None: never copied). The sink keeps it with the rows; a
    capture end that runs apart keeps the same for what its transport holds."""
    if ev.snapshot == "start":  # a re-copy was requested: from the beginning, durably
        return ("copying", None, 0)
    state = prev or ("copying", None, 0)
    if ev.after is None:
        return ("done" if ev.snapshot == "last" else "copying", state[1], state[2])
    return ("done" if ev.snapshot == "last" else "copying", [ev.key[k] for k in key], state[2] + 1)
