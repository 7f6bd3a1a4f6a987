"""The catalog service, extracted from the monolith (step 3 of the migration).

Starlette + SQLAlchemy over its own database (see models.py for the schema and README.md
for the contract and its intended differences). Run it with
`python -m extracted.catalog --host H --port P`.

    app.py         create_app(): routes, middleware, error translation, start-up
    routes.py      thin HTTP handlers        filters.py    query-string rules
    selectors.py   reads (product_list...)   services.py   writes (product_create...)
    schemas.py     JSON in/out               config.py     CATALOG_* settings
    models.py      tables                    migrations.py its Alembic scripts
    service.yaml   how a stack runs it (stack/services.py)

Errors, pagination, the router's identity header, trusted proxies, request ids, JSON logs,
metrics, fault injection, tracing and migration runs come from the shared kit
(`extracted/kit/`), as every extracted service's do.
"""

from extracted.catalog.app import create_app
from extracted.catalog.config import Settings
from extracted.kit.errors import ServiceError

__all__ = ["ServiceError", "Settings", "create_app"]
