"""Checkpoints kept in the *target* database, so they commit atomically with the rows.

    strangler_cdc_position     per (stream, source table) the last applied position; the
                               row with table '' is the stream-wide position (for status)
    strangler_cdc_snapshot     per (stream, source table) snapshot state and last copied key
    strangler_cdc_dead_letter  events that could not be applied, with the reason
    strangler_cdc_recent_keys  per (stream, source table, sink batch) the keys changed in a
                               table of an ownership group and their source commit times, pruned
                               to a short window: what the dual-write detector (cdc/dualwrite.py)
                               reads
    strangler_cdc_resume       per stream the transport's resume token (Kafka: the offsets to
                               read next), written in the same transaction as the rows
    strangler_cdc_lease        per stream the fencing lease of the one active applier
                               (cdc/lease.py)

Replay after a crash skips every event at or before its table's stored position.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from cdc.events import Position, json_default
from cdc.keys import KeyLog

metadata = sa.MetaData()

positions = sa.Table(
    "strangler_cdc_position", metadata,
    sa.Column("stream", sa.String(64), primary_key=True),
    sa.Column("source_table", sa.String(200), primary_key=True),
    sa.Column("lsn", sa.BigInteger, nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("source_ts_ms", sa.BigInteger, nullable=False, default=0),
    sa.Column("applied_ms", sa.BigInteger, nullable=False, default=0),
)

snapshots = sa.Table(
    "strangler_cdc_snapshot", metadata,
    sa.Column("stream", sa.String(64), primary_key=True),
    sa.Column("source_table", sa.String(200), primary_key=True),
    sa.Column("state", sa.String(16), nullable=False),  # copying | done
    sa.Column("last_key", sa.Text, nullable=True),  # JSON list, key order
    sa.Column("rows", sa.BigInteger, nullable=False, default=0),
)

dead_letters = sa.Table(
    "strangler_cdc_dead_letter", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("stream", sa.String(64), nullable=False, index=True),
    sa.Column("source_table", sa.String(200), nullable=False),
    sa.Column("position", sa.String(64), nullable=False),
    sa.Column("op", sa.String(1), nullable=False),
    sa.Column("event", sa.Text, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("at_ms", sa.BigInteger, nullable=False),
)


recent = sa.Table(
    "strangler_cdc_recent_keys", metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("stream", sa.String(64), nullable=False),
    sa.Column("tbl", sa.String(200), nullable=False),  # source table
    sa.Column("n", sa.Integer, nullable=False),  # how many changes
    sa.Column("ts_min", sa.BigInteger, nullable=False),  # their source commit times
    sa.Column("ts_max", sa.BigInteger, nullable=False),
    sa.Column("body", sa.Text, nullable=False),  # cdc.keys.KeyLog.body(): the keys, both terms
    sa.Index("ix_strangler_cdc_recent_keys_stream", "stream", "id"),
)
resumes = sa.Table(
    "strangler_cdc_resume", metadata,
    sa.Column("stream", sa.String(64), primary_key=True),
    sa.Column("token", sa.Text, nullable=False),  # JSON, opaque to all but the transport
)

leases = sa.Table(
    "strangler_cdc_lease", metadata,
    sa.Column("stream", sa.String(64), primary_key=True),
    sa.Column("holder", sa.String(200), nullable=False),
    sa.Column("epoch", sa.BigInteger, nullable=False),
    sa.Column("expires_ms", sa.BigInteger, nullable=False),
)

RECENT_CAP = 100_000  # changes kept per stream at most (whole batches, newest first)


def ensure(engine: Engine) -> None:
    metadata.create_all(engine, checkfirst=True)


def _upsert(conn: Connection, table: sa.Table, row: dict[str, Any], keys: list[str]) -> None:
    dialect = conn.dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        stmt = pg_insert(table).values(**row)
        conn.execute(stmt.on_conflict_do_update(
            index_elements=keys, set_={k: stmt.excluded[k] for k in row if k not in keys}))
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as lite_insert

        lstmt = lite_insert(table).values(**row)
        conn.execute(lstmt.on_conflict_do_update(
            index_elements=keys, set_={k: lstmt.excluded[k] for k in row if k not in keys}))
    else:  # portable fallback
        where = sa.and_(*(table.c[k] == row[k] for k in keys))
        if conn.execute(sa.update(table).where(where).values(**row)).rowcount == 0:
            conn.execute(sa.insert(table).values(**row))


def load_positions(conn: Connection, stream: str) -> dict[str, Position]:
    rows = conn.execute(sa.select(positions.c.source_table, positions.c.lsn, positions.c.seq)
                        .where(positions.c.stream == stream))
    return {t: Position(int(lsn), int(seq)) for t, lsn, seq in rows}


def save_position(conn: Connection, stream: str, table: str, pos: Position, source_ts_ms: int) -> None:
    _upsert(conn, positions, {"stream": stream, "source_table": table, "lsn": pos.lsn,
                              "seq": pos.seq, "source_ts_ms": source_ts_ms,
                              "applied_ms": int(time.time() * 1000)}, ["stream", "source_table"])


def snapshot_states(conn: Connection, stream: str) -> dict[str, tuple[str, list[Any] | None, int]]:
    rows = conn.execute(sa.select(snapshots.c.source_table, snapshots.c.state, snapshots.c.last_key,
                                  snapshots.c.rows).where(snapshots.c.stream == stream))
    return {t: (s, json.loads(k) if k else None, int(n or 0)) for t, s, k, n in rows}


def save_snapshot(conn: Connection, stream: str, table: str, state: str,
                  last_key: list[Any] | None, rows: int) -> None:
    _upsert(conn, snapshots, {"stream": stream, "source_table": table, "state": state,
                              "last_key": json.dumps(last_key, default=json_default) if last_key is not None else None,
                              "rows": rows}, ["stream", "source_table"])


def load_resume(conn: Connection, stream: str) -> dict[str, Any] | None:
    token = conn.execute(sa.select(resumes.c.token).where(resumes.c.stream == stream)).scalar()
    return json.loads(token) if token else None


def save_resume(conn: Connection, stream: str, token: Mapping[str, Any]) -> None:
    _upsert(conn, resumes, {"stream": stream, "token": json.dumps(token, separators=(",", ":"))},
            ["stream"])


def dead_letters_after(conn: Connection, stream: str, after_id: int) -> list[tuple[int, str, str]]:
    """(id, event JSON, reason) of the stream's dead letters with an id above `after_id`."""
    t = dead_letters
    rows = conn.execute(sa.select(t.c.id, t.c.event, t.c.reason)
                        .where(t.c.stream == stream, t.c.id > after_id).order_by(t.c.id))
    return [(int(i), str(e), str(r)) for i, e, r in rows]


def last_dead_letter_id(conn: Connection, stream: str) -> int:
    t = dead_letters
    return int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(t.c.id), 0))
                            .where(t.c.stream == stream)).scalar_one())


def add_dead_letter(conn: Connection, stream: str, table: str, position: Position, op: str,
                    event: str, reason: str) -> None:
    conn.execute(sa.insert(dead_letters).values(
        stream=stream, source_table=table, position=str(position), op=op, event=event,
        reason=reason[:4000], at_ms=int(time.time() * 1000)))


def dead_letter_count(conn: Connection, stream: str) -> int:
    return int(conn.execute(sa.select(sa.func.count()).select_from(dead_letters)
                            .where(dead_letters.c.stream == stream)).scalar_one())


def record_recent(conn: Connection, stream: str, logs: Sequence[KeyLog]) -> None:
    """One row per table of the batch's changed keys (cdc.keys.KeyLog)."""
    rows = [{"stream": stream, "tbl": log.table, "n": len(log), "ts_min": log.ts_min,
             "ts_max": log.ts_max, "body": log.body()} for log in logs if len(log)]
    if rows:
        conn.execute(sa.insert(recent), rows)


def prune_recent(conn: Connection, stream: str, older_than_ms: int, cap: int = RECENT_CAP) -> None:
    """Forget batches whose changes are all older than `older_than_ms`, and the oldest batches
    beyond `cap` changes."""
    r = recent
    conn.execute(sa.delete(r).where(r.c.stream == stream, r.c.ts_max < older_than_ms))
    total, edge = 0, None
    for rid, n in conn.execute(sa.select(r.c.id, r.c.n).where(r.c.stream == stream).order_by(r.c.id.desc())):
        total += int(n)
        if total > cap:
            edge = rid
            break
    if edge is not None:
        conn.execute(sa.delete(r).where(r.c.stream == stream, r.c.id <= edge))


def recent_changes(conn: Connection, stream: str, since_ms: int) -> list[tuple[str, str, str, int]]:
    """(table, key, target key, ts_ms) per key changed through `stream` since `since_ms`, keys
    as canonical text, each with the newest commit time of the batches that hold it."""
    r = recent
    newest: dict[tuple[str, str], tuple[str, int]] = {}
    for table, body, ts in conn.execute(sa.select(r.c.tbl, r.c.body, r.c.ts_max)
                                        .where(r.c.stream == stream, r.c.ts_max >= since_ms)):
        for key, tkey in KeyLog.keys(body):
            seen = newest.get((table, key))
            if seen is None or seen[1] < ts:
                newest[(table, key)] = (tkey, int(ts))
    return [(t, k, tk, ts) for (t, k), (tk, ts) in newest.items()]


def clear(conn: Connection, stream: str) -> None:
    """Forget a stream (``cdc drop``); dead letters stay for inspection, and so does the
    transport's resume token: a stream run again reads on after what it applied."""
    for table in (positions, snapshots, recent):
        conn.execute(sa.delete(table).where(table.c.stream == stream))
