"""The fencing lease (cdc/lease.py) on SQLite and a real PostgreSQL: one holder at a time,
takeover only once the lease has expired and no transaction of the holder is open, and a
holder that lost it can no longer commit anything."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from cdc import checkpoint
from cdc.lease import Fenced, Lease
from cdc.sinks.sqlalchemy import make_engine


def _expire(engine: sa.Engine, stream: str) -> None:
    """As if the holder had stopped renewing long ago (its last renewal is committed)."""
    with engine.begin() as conn:
        conn.execute(sa.update(checkpoint.leases).where(checkpoint.leases.c.stream == stream)
                     .values(expires_ms=0))


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "sqlite":
        path = tmp_path / "t.db"
        sqlite3.connect(path).close()
        url = f"sqlite:///{path}"
    else:
        url = request.getfixturevalue("pg_dsn")
    eng = make_engine(url)
    checkpoint.ensure(eng)
    with eng.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS rows_written (n int)")
        conn.exec_driver_sql("DELETE FROM rows_written")
        conn.execute(sa.delete(checkpoint.leases))
    yield eng
    eng.dispose()


def test_one_holder_until_the_lease_expires_then_the_old_one_is_fenced(engine: Any) -> None:
    a, b = Lease(engine, "s", holder="a", ttl=60), Lease(engine, "s", holder="b", ttl=60)
    assert a.try_acquire() and a.epoch == 1
    assert not b.try_acquire() and b.current_holder() == "a"
    _expire(engine, "s")
    assert b.try_acquire() and b.epoch == 2
    with engine.connect() as conn:  # a wakes up and tries to apply a batch
        conn.begin()
        with pytest.raises(Fenced, match="taken over"):
            a.hold(conn)
            conn.exec_driver_sql("INSERT INTO rows_written VALUES (1)")
        conn.rollback()
    assert not a.still_ours() and b.still_ours()
    with engine.begin() as conn:
        b.hold(conn)
        conn.exec_driver_sql("INSERT INTO rows_written VALUES (2)")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT n FROM rows_written").all() == [(2,)]


def test_a_released_lease_is_taken_at_once(engine: Any) -> None:
    a, b = Lease(engine, "s", holder="a", ttl=60), Lease(engine, "s", holder="b", ttl=60)
    assert a.try_acquire()
    a.release()
    assert a.epoch == 0 and b.try_acquire()
    stop = threading.Event()
    stop.set()
    assert not a.acquire(stop)  # told to stop while waiting: gives up, holds nothing


@pytest.mark.postgres
def test_no_takeover_while_the_holder_is_inside_a_transaction(pg_dsn: str) -> None:
    """The holder's open transaction locks the lease row: even past its expiry a stand-by
    cannot take over (and apply beside it) until that transaction ends."""
    engine = make_engine(pg_dsn)
    checkpoint.ensure(engine)
    with engine.begin() as conn:
        conn.execute(sa.delete(checkpoint.leases).where(checkpoint.leases.c.stream == "locked"))
    a, b = Lease(engine, "locked", holder="a", ttl=0.2), Lease(engine, "locked", holder="b", ttl=0.2)
    try:
        assert a.try_acquire()
        with engine.connect() as conn:
            conn.begin()
            a.hold(conn)  # a long apply transaction
            time.sleep(0.5)  # the committed expiry is past now
            assert not b.try_acquire()
            conn.commit()
        time.sleep(0.5)  # a stopped renewing (it died between transactions)
        assert b.try_acquire() and b.epoch == a.epoch + 1
    finally:
        engine.dispose()
