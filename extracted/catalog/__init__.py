"""The catalog service, extracted from the monolith (step 3 of the migration).

Starlette + SQLAlchemy over its own database (see models.py for the schema and README.md
for the contract and its intended differences). Run it with
`python -m extracted.catalog --host H --port P`.

    app.py         create_app(): routes, middleware, error translation, start-up
    routes.py      thin HTTP handlers        filters.py    query-string rules
    selectors.py   reads (product_list...)   services.py   writes (product_create...)
    schemas.py     JSON in/out               pagination.py DRF-style pages and links
    identity.py    router identity header    middleware.py request id, logs, metrics, faults
    models.py      tables                    migrations.py Alembic from code
"""

from extracted.catalog.app import create_app
from extracted.catalog.config import Settings
from extracted.catalog.errors import CatalogError

__all__ = ["CatalogError", "Settings", "create_app"]
