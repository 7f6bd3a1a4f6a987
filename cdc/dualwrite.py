"""The dual-write detector: the same key changed on both sides of an ownership group lately.

Each sink records, with the rows, the keys of the changes it took for tables in an ownership
group (applied, or dead-lettered because the side does not own the table) with their source
commit time, in ``strangler_cdc_recent_keys`` of its target database (a row per table per
batch, both key terms: cdc/keys.py), pruned to a short window (cdc/sinks/sqlalchemy.py). Changes a non-owner may make (its kept columns) are not recorded:
they never touch the owner's columns. `find` reads both streams' records, pairs the group's
tables by position and compares keys in the forward stream's source terms: the forward
sink recorded them as they are, the reverse sink mapped them to its target's (the same
database). A key on both sides with commit times within the window is a dual write: two
writers for one row, which ownership says must not happen.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

import ownership
from cdc import checkpoint
from cdc.config import StreamConfig, StreamsFile
from cdc.errors import CDCError, ConfigError
from cdc.sinks.sqlalchemy import RECENT_WINDOW_S, make_engine

__all__ = ["DualWrite", "detect", "find"]


@dataclass(frozen=True, kw_only=True)
class DualWrite:
    group: str
    table: str  # the forward stream's source table
    key: dict[str, Any]  # in the forward stream's source terms
    forward_ts_ms: int  # source commit time of the change the forward stream carried
    reverse_ts_ms: int  # ... and of the reverse stream's

    def as_dict(self) -> dict[str, Any]:
        return {"group": self.group, "table": self.table, "key": self.key,
                "forward_ts_ms": self.forward_ts_ms, "reverse_ts_ms": self.reverse_ts_ms}


def _recorded(url: str, stream: str, since_ms: int) -> list[tuple[str, str, str, int]]:
    engine = make_engine(url)
    try:
        if not sa.inspect(engine).has_table(checkpoint.recent.name):
            return []  # the sink never ran (or predates the detector)
        with engine.connect() as conn:
            return checkpoint.recent_changes(conn, stream, since_ms)
    except sa.exc.DBAPIError as exc:
        raise CDCError(f"cannot read {checkpoint.recent.name} of stream {stream}: "
                       f"{str(exc.orig).strip()}") from exc
    finally:
        engine.dispose()


def find(forward: StreamConfig, reverse: StreamConfig, group: ownership.Group,
         window_s: float = RECENT_WINDOW_S, *, now_ms: int | None = None) -> list[DualWrite]:
    """Keys changed through both streams within `window_s` of each other (and of now)."""
    side_f, side_r = group.side_of_stream(forward.name), group.side_of_stream(reverse.name)
    if side_f is None or side_r is None or side_f.name == side_r.name:
        raise ConfigError(f"ownership.groups.{group.name}",
                          f"streams {forward.name!r} and {reverse.name!r} are not the two sides' "
                          f"streams of group {group.name!r} (its sides' streams: "
                          f"{', '.join(s.stream for s in group.sides.values())})")
    window_ms = int(window_s * 1000)
    since = (int(time.time() * 1000) if now_ms is None else now_ms) - window_ms
    pairs = dict(zip(side_r.tables, side_f.tables, strict=True))  # reverse table -> forward table
    theirs: dict[tuple[str, str], int] = {}
    for table, _key, tkey, ts in _recorded(reverse.target_url, reverse.name, since):
        if table in pairs:  # the reverse sink's target key is the forward's source key
            theirs[(pairs[table], tkey)] = ts
    out = []
    for table, key, _tkey, ts in _recorded(forward.target_url, forward.name, since):
        other = theirs.get((table, key))
        if other is not None and abs(ts - other) <= window_ms:
            out.append(DualWrite(group=group.name, table=table, key=json.loads(key),
                                 forward_ts_ms=ts, reverse_ts_ms=other))
    return sorted(out, key=lambda d: -max(d.forward_ts_ms, d.reverse_ts_ms))


def detect(streams: StreamsFile, window_s: float = RECENT_WINDOW_S) -> dict[str, list[DualWrite]]:
    """Per ownership group whose two streams are both in `streams`, its dual writes, keys in
    the terms of the side listed first (no ownership file: nothing to compare)."""
    if not streams.ownership_path or not os.path.exists(streams.ownership_path):
        return {}
    o = ownership.load(streams.ownership_path)
    out = {}
    for g in o.groups.values():
        fwd, rev = (s.stream for s in g.sides.values())  # forward: the side listed first
        if fwd in streams.streams and rev in streams.streams:
            out[g.name] = find(streams.streams[fwd], streams.streams[rev], g, window_s)
    return out
