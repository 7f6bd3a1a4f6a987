"""Has a stream applied everything up to now? A marker through the stream answers it.

`mark` writes a logical message into the stream's source (the same kind `strangler cdc
snapshot` writes; PostgreSQL ``pg_logical_emit_message``, SQLite a changelog row) and returns
its position: it comes after every change committed before the call. The sink records the
position of every message it passes in the target's checkpoint, in commit order, so once
`applied` (that checkpoint) reaches the marker, the stream has applied everything that was
committed before it: no need for the stream to see a change, and the same for direct and
Kafka transports. Used by `strangler own` (drain before the flip) and `verify --repair`
(wait for the re-copy it requested).
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from cdc import checkpoint
from cdc.config import StreamConfig
from cdc.errors import SourceError
from cdc.events import lsn_int
from cdc.sources import MESSAGE_PREFIX
from cdc.sources.sqlite import CHANGELOG, sqlite_path

__all__ = ["applied", "capturing", "mark", "snapshot_done", "wait_applied_to"]


def mark(cfg: StreamConfig, body: dict[str, Any] | None = None) -> int:
    """Write a message (default: a drain marker) into `cfg`'s source; its position (LSN or id)."""
    content = json.dumps({"stream": cfg.name, **(body or {"drain": uuid.uuid4().hex})})
    if cfg.source_kind == "sqlite":
        path = sqlite_path(cfg.source_url)
        try:
            conn = sqlite3.connect(path, timeout=30)
            try:
                with conn:
                    cur = conn.execute(f"INSERT INTO {CHANGELOG} (stream, tbl, op, old, new, ts_ms) "
                                       "VALUES (?, '', 'm', NULL, ?, 0)", (cfg.name, content))
                return int(cur.lastrowid or 0)
            finally:
                conn.close()
        except sqlite3.Error as exc:
            raise SourceError(f"cannot write a marker into {CHANGELOG} in {path} ({exc}): is stream "
                              f"{cfg.name} installed? run `strangler cdc run {cfg.name}`") from exc
    import psycopg2

    from cdc.sources.postgres import libpq_dsn

    try:
        pg = psycopg2.connect(libpq_dsn(cfg.source_url))
        try:
            with pg, pg.cursor() as pcur:
                pcur.execute("SELECT pg_logical_emit_message(true, %s, %s)::text", (MESSAGE_PREFIX, content))
                return lsn_int((pcur.fetchone() or ("0/0",))[0])
        finally:
            pg.close()
    except psycopg2.Error as exc:
        raise SourceError(f"cannot write a marker into stream {cfg.name}'s source: "
                          f"{str(exc).strip()}") from exc


def applied(cfg: StreamConfig) -> int | None:
    """The stream-wide position the target has committed (None: never applied anything)."""
    from cdc.sinks.sqlalchemy import make_engine

    engine = make_engine(cfg.target_url)
    try:
        if checkpoint.positions.name not in sa.inspect(engine).get_table_names():
            return None
        with engine.connect() as conn:
            pos = checkpoint.load_positions(conn, cfg.name).get("")
        return pos.lsn if pos is not None else None
    finally:
        engine.dispose()


def wait_applied_to(cfg: StreamConfig, position: int, *, timeout: float, poll: float = 0.05) -> bool:
    """Wait (bounded) until the target has applied `position`; False when the time is up."""
    deadline = time.monotonic() + timeout
    while True:
        done = applied(cfg)
        if done is not None and done >= position:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll)


def snapshot_done(cfg: StreamConfig, tables: Sequence[str]) -> bool:
    """Every one of `tables` has finished its (re-)copy in the target."""
    from cdc.sinks.sqlalchemy import make_engine

    engine = make_engine(cfg.target_url)
    try:
        with engine.connect() as conn:
            states = checkpoint.snapshot_states(conn, cfg.name)
    finally:
        engine.dispose()
    return all(states.get(t, ("",))[0] == "done" for t in tables)


def capturing(cfg: StreamConfig) -> bool:
    """The stream's capture point exists in its source (SQLite triggers, a PostgreSQL slot):
    changes made now are kept for it, running or not."""
    if cfg.source_kind == "sqlite":
        conn = sqlite3.connect(sqlite_path(cfg.source_url), timeout=30)
        try:
            return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'trigger' AND name LIKE ?",
                                (f"strangler_{cfg.name}_%",)).fetchone() is not None
        finally:
            conn.close()
    import psycopg2

    from cdc.sources.postgres import libpq_dsn

    pg = psycopg2.connect(libpq_dsn(cfg.source_url))
    try:
        with pg.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (cfg.slot,))
            return cur.fetchone() is not None
    finally:
        pg.close()
