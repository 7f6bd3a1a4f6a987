"""Checkpoints kept in the *target* database, so they commit atomically with the rows.

    strangler_cdc_position     per (stream, source table) the last applied position; the
                               row with table '' is the stream-wide position (for status)
    strangler_cdc_snapshot     per (stream, source table) snapshot state and last copied key
    strangler_cdc_dead_letter  events that could not be applied, with the reason
    strangler_cdc_recent       per (stream, source table, key) the source commit time of the
                               last change of a table in an ownership group, pruned to a short
                               window: what the dual-write detector (cdc/dualwrite.py) reads

Replay after a crash skips every event at or before its table's stored position.
"""

from __future__ import annotations

import json
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from cdc.events import Position, json_default
from cdc.sinks.pgbulk import Upserter

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
    "strangler_cdc_recent", metadata,
    sa.Column("stream", sa.String(64), primary_key=True),
    sa.Column("tbl", sa.String(200), primary_key=True),  # source table
    sa.Column("key", sa.Text, primary_key=True),  # the key in source terms (canonical JSON)
    sa.Column("tkey", sa.Text, nullable=False),  # the same key in target terms
    sa.Column("ts_ms", sa.BigInteger, nullable=False),  # source commit time
    sa.Index("ix_strangler_cdc_recent_ts", "stream", "ts_ms"),
)
RECENT_CAP = 10_000  # rows kept per stream at most, newest first
_RECENT_PG = Upserter(recent.name, None, ["stream", "tbl", "key"])


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


def add_dead_letter(conn: Connection, stream: str, table: str, position: Position, op: str,
                    event: str, reason: str) -> None:
    conn.execute(sa.insert(dead_letters).values(
        stream=stream, source_table=table, position=str(position), op=op, event=event,
        reason=reason[:4000], at_ms=int(time.time() * 1000)))


def dead_letter_count(conn: Connection, stream: str) -> int:
    return int(conn.execute(sa.select(sa.func.count()).select_from(dead_letters)
                            .where(dead_letters.c.stream == stream)).scalar_one())


def record_recent(conn: Connection, stream: str, rows: list[tuple[str, str, str, int]]) -> None:
    """Upsert (table, key, tkey, ts_ms) rows: the last change per key wins."""
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        # COPY + one merge, as the sink writes rows (SQLAlchemy runs an upsert's executemany
        # row by row on psycopg2: a round trip per key made bulk applies 5x slower)
        last = {(t, k): {"stream": stream, "tbl": t, "key": k, "tkey": tk, "ts_ms": ts}
                for t, k, tk, ts in rows}  # one row per key per statement
        _RECENT_PG.upsert(conn.connection.cursor(), ["stream", "tbl", "key", "tkey", "ts_ms"],
                          list(last.values()))
        return
    from sqlalchemy.dialects.sqlite import insert
    ins = insert(recent)
    stmt = ins.on_conflict_do_update(index_elements=["stream", "tbl", "key"],
                                     set_={"tkey": ins.excluded.tkey, "ts_ms": ins.excluded.ts_ms})
    conn.execute(stmt, [{"stream": stream, "tbl": t, "key": k, "tkey": tk, "ts_ms": ts}
                        for t, k, tk, ts in rows])


def prune_recent(conn: Connection, stream: str, older_than_ms: int, cap: int = RECENT_CAP) -> None:
    """Forget changes older than `older_than_ms`, and all but the newest `cap`."""
    r = recent
    conn.execute(sa.delete(r).where(r.c.stream == stream, r.c.ts_ms < older_than_ms))
    n = conn.execute(sa.select(sa.func.count()).select_from(r).where(r.c.stream == stream)).scalar_one()
    if n > cap:
        edge = (sa.select(r.c.ts_ms).where(r.c.stream == stream).order_by(r.c.ts_ms.desc())
                .offset(cap).limit(1).scalar_subquery())
        conn.execute(sa.delete(r).where(r.c.stream == stream, r.c.ts_ms <= edge))


def recent_changes(conn: Connection, stream: str, since_ms: int) -> list[tuple[str, str, str, int]]:
    """(table, key, tkey, ts_ms) of the changes recorded for `stream` since `since_ms`."""
    r = recent
    return [(t, k, tk, int(ts)) for t, k, tk, ts in conn.execute(
        sa.select(r.c.tbl, r.c.key, r.c.tkey, r.c.ts_ms).where(r.c.stream == stream, r.c.ts_ms >= since_ms))]


def clear(conn: Connection, stream: str) -> None:
    """Forget a stream (``cdc drop``); dead letters stay for inspection."""
    for table in (positions, snapshots, recent):
        conn.execute(sa.delete(table).where(table.c.stream == stream))
