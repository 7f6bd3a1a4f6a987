"""Alembic environment: runs the catalog migrations on the engine handed over by `migrations.py`."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Engine

from extracted.catalog.models import metadata

engine = context.config.attributes.get("engine")
if not isinstance(engine, Engine):
    raise RuntimeError(
        "run the catalog migrations through extracted.catalog.migrations.upgrade() "
        "or `python -m extracted.catalog --migrate-only`, not the bare alembic command"
    )

with engine.begin() as connection:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite ALTERs via batch mode
    )
    with context.begin_transaction():
        context.run_migrations()
