"""The one event model every source emits and every transport and sink carries.

An event is a row change in the Debezium envelope (``before``, ``after``, ``source``, ``op``,
``ts_ms``) so consumers written for Debezium read it unchanged. ``op`` is one of

    c  insert        u  update        d  delete        t  truncate
    r  read: a row copied by a snapshot (``source.snapshot`` is "true", or "last" on the
       final chunk of a table; a "last" marker with ``after`` None carries no row)

Every event also has a ``key`` (the primary-key columns of the source row) and a
``position``: ``(commit LSN, index within the transaction)`` for PostgreSQL, ``(changelog
id, 0)`` for SQLite. Positions are totally ordered within a stream and are what sinks store
to make replay idempotent. ``last`` marks the final event of a source transaction: sinks
commit only there, so a target never shows half a source transaction.

Columns whose value the source could not see (PostgreSQL's unchanged TOASTed values) are
simply absent from ``after``: a sink leaves them as they are. In the JSON envelope they are
listed under ``source.unchanged`` (Debezium writes a placeholder string instead; we never
emit one, so nobody can write it by mistake). A change of the key is a ``d`` of the old key
and a ``c`` of the new one; when that ``c`` lacks unchanged columns, it comes first and
carries the old key in ``before``, so a sink can take the missing values from the old row.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, NamedTuple

OPS = frozenset("curdt")
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
    snapshot: str = "false"  # "true" | "last" for op "r"
    unchanged: tuple[str, ...] = field(default_factory=tuple)  # unseen TOAST columns

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise ValueError(f"op must be one of c/u/d/r/t, not {self.op!r}")

    def to_envelope(self) -> dict[str, Any]:
        """The Debezium envelope (payload part), plus position fields under ``source``."""
        return {
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
            ts_ms=int(env.get("ts_ms") or 0), last=bool(src.get("last", True)),
            db=src.get("db", ""), schema=src.get("schema", ""), tx_id=src.get("txId"),
            snapshot=str(src.get("snapshot", "false")), unchanged=tuple(src.get("unchanged") or ()),
        )

    @classmethod
    def from_json(cls, value: bytes | str, key: bytes | str | None = None) -> ChangeEvent:
        """Inverse of :meth:`to_json` (values come back as JSON types; sinks coerce them)."""
        env = json.loads(value, parse_float=Decimal)
        key_obj = json.loads(key, parse_float=Decimal) if key else {}
        return cls.from_envelope(env, key_obj)


def json_default(value: Any) -> Any:
    """JSON for the value types sources produce (numbers keep their exact text)."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")
