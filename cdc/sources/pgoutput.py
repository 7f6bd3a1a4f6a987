"""Decoding of PostgreSQL's built-in `pgoutput` logical replication messages (protocol 1).

Pure functions over the raw payload bytes: no I/O. Message letters:
B begin, C commit, O origin, R relation, Y type, I insert, U update, D delete, T truncate,
M logical message. Column values arrive as text and are turned into values by the kind the
source gives each column (:mod:`cdc.sources.postgres`: Python values for a few exact types,
the text itself for the rest), as its snapshot SELECTs do. `tuple_data`, once per row, is
compiled where cdc._speedups built (cdc/native.py); `tuple_data_py` is the same in Python.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from cdc.native import speedups

_I16 = struct.Struct("!h").unpack_from
_I32 = struct.Struct("!i").unpack_from
_U32 = struct.Struct("!I").unpack_from
_I64 = struct.Struct("!q").unpack_from
_U64 = struct.Struct("!Q").unpack_from
PG_EPOCH_MS = 946_684_800_000  # 2000-01-01 in unix ms

UNCHANGED = object()  # an unchanged TOASTed value: never written anywhere


def _decimal(text: bytes) -> Decimal:
    return Decimal(text.decode())


# A column's kind: how its text becomes a value (the same letters in cdc/_speedups.c).
KINDS: dict[str, Callable[[bytes], Any]] = {
    "s": bytes.decode,  # text, and every type kept as PostgreSQL's own text
    "i": int, "f": float, "n": _decimal, "b": b"t".__eq__,
}


@dataclass(slots=True)
class RelationInfo:
    relid: int
    namespace: str
    name: str
    replident: str
    columns: tuple[str, ...]
    type_oids: list[int]
    typmods: list[int]
    key_flags: list[bool]
    kinds: str  # one letter of KINDS per column
    table: str = ""  # filled by the source: name as streams.yaml spells it
    keycols: list[str] = field(default_factory=list)
    pairs: list[tuple[str, Callable[[bytes], Any]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.pairs = [(c, KINDS[k]) for c, k in zip(self.columns, self.kinds, strict=True)]


def _cstring(buf: bytes, pos: int) -> tuple[str, int]:
    end = buf.index(b"\0", pos)
    return buf[pos:end].decode(), end + 1


def begin(buf: bytes) -> tuple[int, int, int]:
    """(final LSN, commit ts in unix ms, xid)."""
    return _U64(buf, 1)[0], _I64(buf, 9)[0] // 1000 + PG_EPOCH_MS, _U32(buf, 17)[0]


def commit(buf: bytes) -> tuple[int, int]:
    """(commit LSN, end LSN)."""
    return _U64(buf, 2)[0], _U64(buf, 10)[0]


def origin(buf: bytes) -> str:
    return _cstring(buf, 9)[0]


def relation(buf: bytes, kind_for: Callable[[int], str]) -> RelationInfo:
    relid = _U32(buf, 1)[0]
    ns, pos = _cstring(buf, 5)
    name, pos = _cstring(buf, pos)
    replident = chr(buf[pos])
    ncols = _I16(buf, pos + 1)[0]
    pos += 3
    cols, oids, mods, keys = [], [], [], []
    for _ in range(ncols):
        flags = buf[pos]
        col, pos = _cstring(buf, pos + 1)
        oid, mod = _U32(buf, pos)[0], _I32(buf, pos + 4)[0]
        pos += 8
        cols.append(col)
        oids.append(oid)
        mods.append(mod)
        keys.append(bool(flags & 1))
    return RelationInfo(relid, ns or "public", name, replident, tuple(cols), oids, mods, keys,
                        "".join(kind_for(o) for o in oids))


def tuple_data(buf: bytes, pos: int, rel: RelationInfo) -> tuple[dict[str, Any], list[str], int]:
    """(row dict without unchanged-TOAST columns, the unchanged column names, next pos)."""
    if speedups is not None:
        return speedups.decode_tuple(buf, pos, rel.columns, rel.kinds)
    return tuple_data_py(buf, pos, rel)


def tuple_data_py(buf: bytes, pos: int, rel: RelationInfo) -> tuple[dict[str, Any], list[str], int]:
    """`tuple_data` in Python."""
    pos += 2  # column count: always the relation's
    row: dict[str, Any] = {}
    unchanged: list[str] = []
    i32 = _I32
    for name, cast in rel.pairs:
        kind = buf[pos]
        if kind == 116:  # 't' text
            n = i32(buf, pos + 1)[0]
            pos += 5 + n
            row[name] = cast(buf[pos - n:pos])
        elif kind == 110:  # 'n' null
            row[name] = None
            pos += 1
        elif kind == 117:  # 'u' unchanged TOAST: leave the column out
            unchanged.append(name)
            pos += 1
        else:  # 'b' binary: not requested (binary 'false'); keep the bytes
            n = i32(buf, pos + 1)[0]
            pos += 5 + n
            row[name] = bytes(buf[pos - n:pos])
    return row, unchanged, pos


def message(buf: bytes) -> tuple[bool, int, str, bytes]:
    """(transactional, LSN, prefix, content)."""
    flags = buf[1]
    lsn = _U64(buf, 2)[0]
    prefix, pos = _cstring(buf, 10)
    n = _I32(buf, pos)[0]
    return bool(flags & 1), lsn, prefix, bytes(buf[pos + 4:pos + 4 + n])


def truncate(buf: bytes) -> list[int]:
    n = _I32(buf, 1)[0]
    return [_U32(buf, 6 + 4 * i)[0] for i in range(n)]
