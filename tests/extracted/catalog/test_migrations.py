"""Migrations run once, however many copies start together (#17): the upgrade waits for the
lock every replica takes — PostgreSQL's advisory lock, or a file lock beside a SQLite
database — and the one that comes second finds the head and does nothing.

The tests hold the lock themselves, start an upgrade, wait until the database (or the kernel)
shows it waiting for that lock, check it has changed nothing, then let it go."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from extracted.catalog import migrations
from extracted.kit.db import make_engine
from tests.router.conftest import eventually

ROOT = Path(__file__).resolve().parents[3]


def _upgrade_in_thread(url: str) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def run() -> None:
        engine = make_engine(url)
        try:
            migrations.upgrade(engine)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            errors.append(exc)
        finally:
            engine.dispose()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, errors


def _waits_then_upgrades(url: str, waiting: Callable[[], bool], release: Callable[[], None]) -> None:
    thread, errors = _upgrade_in_thread(url)
    try:
        assert eventually(waiting, timeout=30), "the upgrade never waited for the migration lock"
        engine = make_engine(url)
        try:
            assert "alembic_version" not in inspect(engine).get_table_names()  # nothing done yet
        finally:
            engine.dispose()
    finally:
        release()
    thread.join(timeout=60)
    assert not thread.is_alive() and not errors, errors
    engine = make_engine(url)
    try:
        assert migrations.current_revision(engine) == migrations.head_revision()
    finally:
        engine.dispose()


@pytest.mark.slow
@pytest.mark.postgres
def test_on_postgresql_an_upgrade_waits_for_the_advisory_lock(pg_server) -> None:
    url = pg_server.create_database("migrate_lock")
    holder = make_engine(url)
    conn = holder.connect()
    conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": migrations.ADVISORY_KEY})
    conn.commit()

    def waiting() -> bool:
        with holder.connect() as look:
            return bool(look.execute(text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())")).scalar())

    def release() -> None:
        conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": migrations.ADVISORY_KEY})
        conn.commit()
        conn.close()

    try:
        _waits_then_upgrades(url, waiting, release)
    finally:
        holder.dispose()


def test_on_sqlite_an_upgrade_waits_for_the_file_lock(tmp_path: Path) -> None:
    import fcntl

    database = tmp_path / "catalog.sqlite3"
    lock = open(f"{database}.migrate-lock", "a+b")  # noqa: SIM115 - released by the test
    fcntl.flock(lock, fcntl.LOCK_EX)
    inode = os.fstat(lock.fileno()).st_ino

    def waiting() -> bool:  # the kernel lists a blocked request as "N: -> FLOCK ..."
        return any("->" in line and line.split()[-3].endswith(f":{inode}")
                   for line in Path("/proc/locks").read_text().splitlines())

    def release() -> None:
        fcntl.flock(lock, fcntl.LOCK_UN)
        lock.close()

    _waits_then_upgrades(f"sqlite:///{database}", waiting, release)


@pytest.mark.slow
@pytest.mark.postgres
def test_two_migrate_only_steps_started_together_both_end_at_the_head(pg_server) -> None:
    url = pg_server.create_database("migrate_twice")
    env = {**os.environ, "CATALOG_DATABASE_URL": url}
    procs = [subprocess.Popen([sys.executable, "-m", "extracted.catalog", "--migrate-only"], cwd=ROOT,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    outcomes = [(p.wait(timeout=120), p.stdout.read().decode().strip(), p.stderr.read().decode()[-2000:])
                for p in procs if p.stdout and p.stderr]
    assert [(code, out) for code, out, _ in outcomes] == [(0, migrations.head_revision())] * 2, outcomes
