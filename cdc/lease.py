"""One active applier per stream: a fencing lease held in the target database.

Several apply processes may run for one stream (a stand-by per machine, a restarted pod
beside a hung one); only the lease holder applies. The lease is a row of
``strangler_cdc_lease`` with the holder's name, an *epoch* that every takeover raises, and
an expiry by the database's own clock (so appliers on different machines agree on it):

    acquire   take the row when it has expired (or was never held): epoch + 1
    hold      the first statement of every target transaction that applies rows:
              ``UPDATE … SET expires = now + ttl WHERE epoch = mine``. No row updated
              means someone took over: :class:`Fenced`, and the transaction rolls back.

The update also locks the row until the transaction ends, so a takeover waits for the
holder's transaction to commit or roll back; a new holder reads the resume position only
after acquiring, and so always sees everything its predecessor committed. Safety rests on
the epoch alone, liveness on the expiry: a dead holder's connection closes, its
transaction rolls back, and a stand-by takes the lease within `ttl` seconds.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from cdc import checkpoint
from cdc.errors import CDCError

DEFAULT_TTL = 6.0  # seconds: a stand-by takes over this long after the holder died

leases = checkpoint.leases


class Fenced(CDCError):
    """Another applier took the stream's lease: this one must roll back and stand by."""


def _now_ms(dialect: str) -> sa.ColumnElement[int]:
    """The database's clock in ms since the epoch (every applier reads the same one)."""
    if dialect == "postgresql":
        return sa.literal_column("(extract(epoch from clock_timestamp()) * 1000)::bigint")
    if dialect == "sqlite":
        return sa.literal_column("CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)")
    return sa.literal(int(time.time() * 1000))


def default_holder() -> str:
    """``host:pid:random``: unique per process, readable in `cdc status` and the logs."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass
class Lease:
    """The lease on one stream, as one would-be holder sees it."""

    engine: Engine
    stream: str
    holder: str = field(default_factory=default_holder)
    ttl: float = DEFAULT_TTL
    epoch: int = 0  # ours while we hold it; 0: not held

    def __post_init__(self) -> None:
        self._dialect = self.engine.dialect.name

    def _expires(self) -> sa.ColumnElement[int]:
        return _now_ms(self._dialect) + int(self.ttl * 1000)

    def try_acquire(self) -> bool:
        """Take the lease if it is free or expired (in a transaction of its own)."""
        t = leases
        with self.engine.connect() as conn:
            try:
                with conn.begin():
                    if self._dialect == "postgresql":
                        # the holder's open transaction locks the row: that is "held", not a wait
                        conn.exec_driver_sql("SET LOCAL lock_timeout = '200ms'")
                    if conn.execute(sa.select(t.c.epoch).where(t.c.stream == self.stream)).first() is None:
                        conn.execute(sa.insert(t).values(stream=self.stream, holder="", epoch=0, expires_ms=0))
                    taken = conn.execute(
                        sa.update(t).where(t.c.stream == self.stream, t.c.expires_ms < _now_ms(self._dialect))
                        .values(holder=self.holder, epoch=t.c.epoch + 1, expires_ms=self._expires())
                        .returning(t.c.epoch)).first()
            except sa.exc.DBAPIError as exc:
                if _is_contention(exc):
                    return False
                raise
        if taken is None:
            return False
        self.epoch = int(taken[0])
        return True

    def acquire(self, stop: threading.Event, on_wait: Callable[[str], None] = lambda who: None) -> bool:
        """Wait until the lease is ours (True) or `stop` is set (False); `on_wait` hears who
        holds it, once per change of holder."""
        last = None
        while not stop.is_set():
            if self.try_acquire():
                return True
            who = self.current_holder()
            if who != last:
                on_wait(who)
                last = who
            stop.wait(min(1.0, self.ttl / 5))
        return False

    def hold(self, conn: Connection) -> None:
        """Inside the caller's transaction: renew the lease and lock it until that transaction
        ends, or raise :class:`Fenced` if another applier holds it now."""
        if not self.epoch:
            raise Fenced(f"stream {self.stream}: this applier does not hold the lease")
        t = leases
        done = conn.execute(sa.update(t).where(t.c.stream == self.stream, t.c.epoch == self.epoch)
                            .values(expires_ms=self._expires()))
        if done.rowcount != 1:
            epoch, self.epoch = self.epoch, 0
            # (no query for the new holder's name here: on SQLite this connection's write
            # transaction would block it; standing by logs it)
            raise Fenced(f"stream {self.stream}: the lease (epoch {epoch}) was taken over by another "
                         "applier; standing by")

    def release(self) -> None:
        """Let a stand-by take over at once (a clean stop); harmless if not held."""
        if not self.epoch:
            return
        t = leases
        with contextlib.suppress(sa.exc.DBAPIError), self.engine.begin() as conn:
            conn.execute(sa.update(t).where(t.c.stream == self.stream, t.c.epoch == self.epoch)
                         .values(expires_ms=0))
        self.epoch = 0

    def still_ours(self) -> bool:
        """Whether the lease still has our epoch (after an error that may mean we lost it)."""
        if not self.epoch:
            return False
        try:
            with self.engine.connect() as conn:
                epoch = conn.execute(sa.select(leases.c.epoch).where(leases.c.stream == self.stream)).scalar()
        except sa.exc.DBAPIError:
            return True  # cannot tell: the error stands
        if epoch != self.epoch:
            self.epoch = 0
            return False
        return True

    def current_holder(self) -> str:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(leases.c.holder).where(leases.c.stream == self.stream)).first()
        return str(row[0]) if row else ""


def lease_info(conn: sa.Connection, stream: str) -> dict[str, object] | None:
    """Who holds `stream`'s lease and for how much longer, by the database's clock (None:
    never held); for `strangler cdc status`."""
    t = leases
    row = conn.execute(sa.select(t.c.holder, t.c.epoch, t.c.expires_ms - _now_ms(conn.dialect.name))
                       .where(t.c.stream == stream)).first()
    if row is None or not row[0]:
        return None
    left = max(0, int(row[2])) / 1000
    return {"holder": str(row[0]), "epoch": int(row[1]), "expires_in_s": round(left, 1),
            "state": "held" if left > 0 else "expired"}


def _is_contention(exc: sa.exc.DBAPIError) -> bool:
    """The row is locked by the holder's transaction (PostgreSQL lock timeout, SQLite busy),
    or another would-be holder created it at the same moment."""
    code = getattr(exc.orig, "pgcode", None)
    return (code == "55P03" or isinstance(exc, sa.exc.IntegrityError)
            or "database is locked" in str(exc.orig))


__all__ = ["DEFAULT_TTL", "Fenced", "Lease", "default_holder", "lease_info", "leases"]
