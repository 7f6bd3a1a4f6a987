"""Alembic, driven from code: apply a service's migrations once per deploy, check they are applied.

Each service keeps its scripts inside its package (`extracted/<name>/alembic/`), so a wheel or
a container image carries them; no `alembic.ini` is needed. `Migrations(scripts, lock_key)`
is what a service's `migrations.py` builds: `python -m extracted.<name> --migrate-only`
applies them and exits (the deploy's init step), the app applies them at start unless told
not to, and `/readyz` answers 503 until the database is at the head.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text

from extracted.kit.errors import MigrationError


class Migrations:
    """One service's scripts; `lock_key`: a pg_advisory_lock key no other service uses (keys
    are server-wide)."""

    def __init__(self, scripts: Path, *, lock_key: int) -> None:
        self.script_location = str(scripts)
        self.lock_key = lock_key

    def config(self, engine: Engine) -> Config:
        config = Config()
        config.set_main_option("script_location", self.script_location)
        config.attributes["engine"] = engine
        return config

    @functools.cached_property  # the scripts ship with the code: the head cannot change while it runs
    def head(self) -> str:
        heads = ScriptDirectory(self.script_location).get_heads()
        if len(heads) != 1:
            raise MigrationError(f"expected one Alembic head in {self.script_location}, found {heads}")
        return heads[0]

    def head_revision(self) -> str:
        return self.head

    @staticmethod
    def current_revision(engine: Engine) -> str | None:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def upgrade(self, engine: Engine, revision: str = "head") -> None:
        """Bring the schema to `revision` (idempotent), one process at a time.

        Replicas and workers that start together would otherwise race: both see no
        alembic_version, both create the tables, one fails half-way. So the upgrade runs under
        a lock every copy of the service takes: PostgreSQL's advisory lock (held by a session
        of its own, released when it ends, even if the process dies), or for SQLite an
        exclusive lock on a file beside the database. The second one in waits, then finds the
        head and does nothing.
        """
        with self.lock(engine):
            command.upgrade(self.config(engine), revision)

    def downgrade(self, engine: Engine, revision: str) -> None:
        command.downgrade(self.config(engine), revision)

    @contextlib.contextmanager
    def lock(self, engine: Engine) -> Iterator[None]:
        if engine.dialect.name == "postgresql":
            with engine.connect() as conn:
                conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": self.lock_key})
                try:
                    yield
                finally:
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self.lock_key})
                    conn.commit()
            return
        database = engine.url.database
        if engine.dialect.name != "sqlite" or not database or database == ":memory:" or database.startswith("file:"):
            yield  # an in-memory database has one user
            return
        import fcntl  # POSIX; a service's SQLite mode is for one machine (README: Windows runs in WSL)

        with open(f"{database}.migrate-lock", "a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
