"""The catalog's Alembic migrations (`extracted/catalog/alembic/`), run by the kit's `Migrations`.

`python -m extracted.catalog --migrate-only` applies them and exits; the app applies them at
start unless `CATALOG_MIGRATE_ON_START=0`; `/readyz` answers 503 until the database is at
the head. Upgrades of every copy of the service share one lock (`extracted.kit.migrations`).
"""

from __future__ import annotations

from pathlib import Path

from extracted.kit.migrations import Migrations

# the key the catalog has always locked with ("strangle"), so a rolling upgrade still excludes
ADVISORY_KEY = int.from_bytes(b"strangle", "big") & 0x7FFF_FFFF_FFFF_FFFF
MIGRATIONS = Migrations(Path(__file__).with_name("alembic"), lock_key=ADVISORY_KEY)

head_revision = MIGRATIONS.head_revision
current_revision = MIGRATIONS.current_revision
upgrade = MIGRATIONS.upgrade
downgrade = MIGRATIONS.downgrade
migration_lock = MIGRATIONS.lock
