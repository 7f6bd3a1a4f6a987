"""Alembic, driven from code: apply the service's migrations and check they are applied.

The migration scripts live inside the package (`extracted/catalog/alembic/`), so a wheel or
a container image carries them; no `alembic.ini` is needed. `python -m extracted.catalog
--migrate-only` applies them and exits; the app applies them at start unless
`CATALOG_MIGRATE_ON_START=0`; `/readyz` answers 503 until the database is at the head.
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

from extracted.catalog.errors import MigrationError

SCRIPT_LOCATION = str(Path(__file__).with_name("alembic"))


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    config.attributes["engine"] = engine
    return config


@functools.cache  # the scripts ship with the code: the head cannot change while it runs
def head_revision() -> str:
    heads = ScriptDirectory(SCRIPT_LOCATION).get_heads()
    if len(heads) != 1:
        raise MigrationError(f"expected one Alembic head in {SCRIPT_LOCATION}, found {heads}")
    return heads[0]


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to `revision` (idempotent), one process at a time.

    Replicas and workers that start together would otherwise race: both see no
    alembic_version, both create the tables, one fails half-way. So the upgrade runs under a
    lock every copy of the service takes: PostgreSQL's advisory lock (held by a session of its
    own, released when it ends, even if the process dies), or for SQLite an exclusive lock on
    a file beside the database. The second one in waits, then finds the head and does nothing.
    """
    with migration_lock(engine):
        command.upgrade(alembic_config(engine), revision)


# Any 64-bit number the catalog alone uses: pg_advisory_lock keys are server-wide.
ADVISORY_KEY = int.from_bytes(b"strangle", "big") & 0x7FFF_FFFF_FFFF_FFFF


@contextlib.contextmanager
def migration_lock(engine: Engine) -> Iterator[None]:
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": ADVISORY_KEY})
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": ADVISORY_KEY})
                conn.commit()
        return
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:" or database.startswith("file:"):
        yield  # an in-memory database has one user
        return
    import fcntl  # POSIX; the service's SQLite mode is for one machine (README: Windows runs in WSL)

    with open(f"{database}.migrate-lock", "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def downgrade(engine: Engine, revision: str) -> None:
    command.downgrade(alembic_config(engine), revision)
