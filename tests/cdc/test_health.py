"""A stalled or endangered stream must look so, and bad input stops it loudly.

Lag while the target is locked, verify's wait under asynchronous commit, an invalidated slot
(on a small server of its own with max_slot_wal_keep_size = 1MB), a slot dropped under a
running stream, a publication someone altered, a target column dropped mid-stream.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from rich.console import Console

from cdc.config import StreamConfig, parse
from cdc.errors import ConfigError, SinkError, SourceError
from cdc.metrics import StreamMetrics
from cdc.pipeline import Pipeline
from cdc.sources import postgres as pg_source
from cdc.sources.postgres import slot_warning
from cdc.verify import wait_applied
from cli.status import render
from control.status import with_slot_warnings
from devstack.postgres import PostgresServer
from tests.cdc.conftest import (
    SOURCE_DDL,
    TARGET_DDL,
    Env,
    source_rows,
    sql,
    stream_spec,
    target_rows,
    wait_for,
)
from tests.conftest import running_postgres

pytestmark = pytest.mark.postgres

# A server of this module's own: invalidating a slot needs a tiny max_slot_wal_keep_size, and a
# WAL writer that sleeps 10 s keeps an asynchronous commit unwritten long enough to see that
# pg_current_wal_lsn() lags it. Commits are synchronous unless a session says otherwise.
OWN_SETTINGS = {"max_slot_wal_keep_size": "1MB", "wal_writer_delay": "10s", "synchronous_commit": "on"}


@pytest.fixture(scope="module")
def own_server() -> Iterator[PostgresServer]:
    yield from running_postgres(OWN_SETTINGS)


@pytest.fixture
def own_env(own_server: PostgresServer, tmp_path: Path) -> Iterator[Env]:
    tag = os.urandom(4).hex()
    env = Env(src=own_server.create_database(f"src_{tag}"), tgt=own_server.create_database(f"tgt_{tag}"),
              folder=tmp_path, streams_path=tmp_path / "streams.yaml")
    sql(env.src, SOURCE_DDL)
    sql(env.tgt, TARGET_DDL)
    env.write_streams(stream_spec(env.src, env.tgt))
    try:
        yield env
    finally:
        env.stop_all()
        wait_for(lambda: not any(r[0] for r in sql(env.src, "SELECT active FROM pg_replication_slots")), 10,
                 "the slot to be released")
        sql(env.src, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots")


def config(env: Env) -> StreamConfig:
    return parse({"streams": {env.name: stream_spec(env.src, env.tgt)}}).stream(env.name)


def seed(env: Env) -> None:
    sql(env.src, "INSERT INTO catalog_category (name) VALUES ('c1'), ('c2')")
    sql(env.src, "INSERT INTO catalog_product (category_id, name, price) SELECT 1, 'p' || g, g FROM generate_series(1, 5) g")


class Running:
    """The pipeline in a thread; `error` is what it stopped with."""

    def __init__(self, cfg: StreamConfig, env: Env) -> None:
        self.ticks: list[float] = []
        self.folder = env.folder / "state" / "cdc"  # where `env.cli("cdc", "status")` looks

        def tick(m: StreamMetrics) -> None:
            m.save(self.folder)
            self.ticks.append(m.lag_ms)

        self.pipe = Pipeline(cfg, on_tick=tick)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._go)
        self.thread.start()

    def _go(self) -> None:
        try:
            self.pipe.run()
        except BaseException as exc:  # inspected by the test
            self.error = exc

    def stopped(self) -> bool:
        return not self.thread.is_alive()

    def stop(self) -> None:
        self.pipe.stop()
        self.thread.join(60)


def equal(env: Env) -> bool:
    return source_rows(env.src) == target_rows(env.tgt)


def status(env: Env) -> dict[str, Any]:
    out = env.cli("cdc", "status", env.name, "--json")
    assert out.returncode == 0, out.stderr
    doc: dict[str, Any] = json.loads(out.stdout)["streams"][0]
    return doc


def position(env: Env) -> list[tuple[Any, ...]]:
    return sql(env.tgt, "SELECT lsn, seq FROM strangler_cdc_position WHERE source_table = ''")


@pytest.mark.slow
def test_a_stalled_stream_shows_growing_lag_and_verify_waits_for_async_commits(own_env: Env) -> None:
    env = own_env
    seed(env)
    cfg = config(env)
    run = Running(cfg, env)
    lock = psycopg2.connect(env.tgt)
    writer = psycopg2.connect(env.src)
    src, tgt = psycopg2.connect(env.src), psycopg2.connect(env.tgt)
    try:
        wait_for(lambda: equal(env), 30, "initial copy")
        wait_for(lambda: sql(env.src, "SELECT confirmed_flush_lsn >= pg_current_wal_lsn() FROM pg_replication_slots")
                 == [(True,)], 30, "the idle slot to follow the server")
        lock.cursor().execute("LOCK TABLE products IN SHARE MODE")  # the sink cannot write: stalled
        with writer.cursor() as cur:
            cur.execute("SET synchronous_commit = off")
            cur.execute("UPDATE catalog_product SET version = version + 1 WHERE id = 1")
        writer.commit()
        # The commit returned but the WAL writer has not written it yet: pg_current_wal_lsn() is
        # still at the slot's position, so the old wait returned True at once (nothing to wait
        # for); the insert position is past the commit, and the stalled stream has not applied it.
        assert wait_applied(cfg, src, tgt, timeout=2) is False
        sql(env.src, "UPDATE catalog_product SET version = version + 1 WHERE id = 2")  # flushes both
        wait_for(lambda: len([t for t in run.ticks if t > 0]) >= 2, 30, "the stalled stream to report lag")
        lagging = [t for t in run.ticks if t > 0]
        assert lagging[-1] > lagging[0]  # growing while stalled, not frozen or 0
        live = status(env)["running"]
        assert live["state"] == "streaming" and live["lag_ms"] > 0
        lock.rollback()  # unstalled: it catches up, and lag goes back to 0
        wait_for(lambda: equal(env), 30, "the changes after the stall")
        assert wait_applied(cfg, src, tgt, timeout=30) is True
        seen = len(run.ticks)
        wait_for(lambda: len(run.ticks) > seen and run.ticks[-1] == 0, 30, "lag to return to 0")
    finally:
        lock.close()
        writer.close()
        src.close()
        tgt.close()
        run.stop()
    assert run.error is None, run.error


def _invalidate_slot(env: Env, slot: str) -> None:
    for i in range(30):  # each round: a WAL segment the slot pins, then a checkpoint removes it
        if sql(env.src, "SELECT wal_status FROM pg_replication_slots WHERE slot_name = %s", (slot,)) == [("lost",)]:
            return
        sql(env.src, f"INSERT INTO catalog_category (name) SELECT 'wal {i}' FROM generate_series(1, 2000)")
        sql(env.src, "SELECT pg_switch_wal()")
        sql(env.src, "CHECKPOINT")
    raise AssertionError("the slot was never invalidated")


@pytest.mark.slow
def test_an_invalidated_slot_is_reported_with_the_recovery_and_refused(own_env: Env) -> None:
    env = own_env
    seed(env)
    cfg = config(env)
    run = Running(cfg, env)
    try:
        wait_for(lambda: equal(env), 30, "initial copy")
    finally:
        run.stop()
    assert run.error is None, run.error
    wait_for(lambda: sql(env.src, "SELECT active FROM pg_replication_slots") == [(False,)], 10, "slot release")
    _invalidate_slot(env, cfg.slot)

    doc = status(env)
    assert doc["slot"]["wal_status"] == "lost"
    for warning in (doc["warning"], doc["slot"]["warning"]):
        assert "INVALIDATED" in warning and f"strangler cdc drop {env.name}" in warning
        assert f"strangler cdc run {env.name}" in warning
    text = env.cli("cdc", "status", env.name).stdout
    assert "WARNING" in text and "INVALIDATED" in text
    # `strangler status` shows it too, even for a stream with no metrics file
    from cdc.health import slot_warnings

    rows = with_slot_warnings([], slot_warnings(str(env.streams_path)))
    console = Console(record=True, width=400)
    console.print(render({"routes": [], "streams": rows}, title="t"))
    shown = console.export_text()
    assert "WARNING shop" in shown and "INVALIDATED" in shown

    out = env.cli("cdc", "run", env.name)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "invalidated" in out.stderr and f"strangler cdc drop {env.name}" in out.stderr
    # the recovery the message gives works: drop, run (re-copy)
    assert env.cli("cdc", "drop", env.name).returncode == 0
    sql(env.src, "UPDATE catalog_product SET name = 'after recovery' WHERE id = 1")
    run = Running(cfg, env)
    try:
        wait_for(lambda: equal(env), 30, "the re-copy")
    finally:
        run.stop()
    assert run.error is None, run.error


def test_slot_warnings_before_invalidation() -> None:
    base = {"slot": "s", "retained_wal_bytes": 900, "max_slot_wal_keep_size": 1000}
    assert slot_warning("shop", {**base, "wal_status": "reserved", "safe_wal_size": 500}) is None
    low = slot_warning("shop", {**base, "wal_status": "extended", "safe_wal_size": 100})
    assert low and "only 100 bytes are left" in low and "strangler cdc run shop" in low
    unreserved = slot_warning("shop", {**base, "wal_status": "unreserved", "safe_wal_size": -5})
    assert unreserved and "about to be invalidated" in unreserved
    assert slot_warning("shop", {"slot": "s", "wal_status": "reserved", "safe_wal_size": None,
                                 "max_slot_wal_keep_size": None}) is None  # no limit set


def test_slot_dropped_under_a_running_stream_is_refused_not_silently_recopied(cdc_env: Env) -> None:
    env = cdc_env
    seed(env)
    cfg = config(env)
    run = Running(cfg, env)
    try:
        wait_for(lambda: equal(env), 30, "initial copy")
        sql(env.src, "UPDATE catalog_product SET name = 'streamed' WHERE id = 1")
        wait_for(lambda: equal(env) and bool(position(env)), 30, "a streamed change")
        kept = position(env)
        # someone drops the slot: its walsender must go first
        wait_for(lambda: not sql(env.src, "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots "
                                          "WHERE slot_name = %s AND active", (cfg.slot,)), 30, "the walsender to go")
        sql(env.src, "SELECT pg_drop_replication_slot(%s)", (cfg.slot,))
        sql(env.src, "UPDATE catalog_product SET name = 'lost to the stream' WHERE id = 2")
        wait_for(run.stopped, 30, "the stream to stop")
    finally:
        run.stop()
    assert isinstance(run.error, SourceError)
    assert position(env) == kept
    warning = status(env)["warning"]
    assert cfg.slot in warning and "gone" in warning and f"strangler cdc drop {env.name}" in warning
    out = env.cli("cdc", "run", env.name, timeout=30)  # (a silent re-copy would run on)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert cfg.slot in out.stderr and "is gone" in out.stderr and f"strangler cdc drop {env.name}" in out.stderr
    # no new slot was made: a new one would have skipped the change above without a word
    assert sql(env.src, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s", (cfg.slot,)) == [(0,)]


def test_a_publication_someone_altered_stops_the_stream_and_is_refused_at_start(
        cdc_env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    env = cdc_env
    seed(env)
    cfg = config(env)
    monkeypatch.setattr(pg_source, "PUBLICATION_CHECK_S", 0.2)  # the running check, made quick
    run = Running(cfg, env)
    try:
        wait_for(lambda: equal(env), 30, "initial copy")
        sql(env.src, f"ALTER PUBLICATION {cfg.publication} SET (publish = 'insert')")
        sql(env.src, "DELETE FROM catalog_product WHERE id = 5")  # would silently never arrive
        wait_for(run.stopped, 30, "the stream to stop")
    finally:
        run.stop()
    assert isinstance(run.error, SourceError)
    for message in (str(run.error), _start_error(cfg, env)):  # while running, and at the next start
        assert cfg.publication in message and "update, delete, truncate" in message
        assert f"strangler cdc drop {env.name}" in message
    # the table dropped from the publication while running
    sql(env.src, f"ALTER PUBLICATION {cfg.publication} SET (publish = 'insert, update, delete, truncate')")
    sql(env.tgt, "DELETE FROM products WHERE id = 5")  # the lost delete, repaired by hand
    run = Running(cfg, env)
    try:
        wait_for(lambda: run.pipe.metrics.state == "streaming", 30, "the stream after the fix")
        sql(env.src, f"ALTER PUBLICATION {cfg.publication} DROP TABLE catalog_product")
        wait_for(run.stopped, 30, "the stream to stop")
    finally:
        run.stop()
    assert isinstance(run.error, SourceError)
    assert "catalog_product" in str(run.error) and f"strangler cdc snapshot {env.name}" in str(run.error)


def _start_error(cfg: StreamConfig, env: Env) -> str:
    out = env.cli("cdc", "run", env.name)
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    return out.stderr


def test_a_target_column_dropped_mid_stream_stops_it_with_the_position_kept(cdc_env: Env) -> None:
    env = cdc_env
    seed(env)
    cfg = config(env)
    run = Running(cfg, env)
    try:
        wait_for(lambda: equal(env), 30, "initial copy")
        kept = position(env)
        sql(env.tgt, "ALTER TABLE products DROP COLUMN description")
        sql(env.src, "UPDATE catalog_product SET name = 'after the drop' WHERE id = 1")
        wait_for(run.stopped, 30, "the stream to stop")
    finally:
        run.stop()
    assert isinstance(run.error, SinkError)
    assert "description" in str(run.error) and "position kept" in str(run.error)
    assert sql(env.tgt, "SELECT count(*) FROM strangler_cdc_dead_letter") == [(0,)]  # nothing dead-lettered
    assert position(env) == kept
    with pytest.raises(ConfigError) as refused:  # the next start names the table, column and fix
        Pipeline(cfg, on_tick=lambda m: None).run()
    assert "'products' has no column 'description'" in str(refused.value)
