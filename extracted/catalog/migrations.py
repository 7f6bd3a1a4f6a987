"""Alembic, driven from code: apply the service's migrations and check they are applied.

The migration scripts live inside the package (`extracted/catalog/alembic/`), so a wheel or
a container image carries them; no `alembic.ini` is needed. `python -m extracted.catalog
--migrate-only` applies them and exits; the app applies them at start unless
`CATALOG_MIGRATE_ON_START=0`; `/readyz` answers 503 until the database is at the head.
"""

from __future__ import annotations

import functools
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

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
    """Bring the schema to `revision` (idempotent)."""
    command.upgrade(alembic_config(engine), revision)


def downgrade(engine: Engine, revision: str) -> None:
    command.downgrade(alembic_config(engine), revision)
