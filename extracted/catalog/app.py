"""The catalog service's ASGI app: routes, error translation, middleware, start-up.

    create_app(settings) -> Starlette

At start-up (lifespan) the Alembic migrations are applied unless
`CATALOG_MIGRATE_ON_START=0`; `/readyz` stays 503 until the schema is at the head.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import Engine
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from extracted.catalog import identity, migrations, tracing
from extracted.catalog.config import Settings
from extracted.catalog.db import make_engine
from extracted.catalog.errors import APIError, NotAuthenticated
from extracted.catalog.metrics import Metrics
from extracted.catalog.middleware import FaultSwitch, ObserveMiddleware
from extracted.catalog.proxies import TrustedProxyMiddleware, parse_networks
from extracted.catalog.routes import routes

log = logging.getLogger("extracted.catalog")


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, APIError)
    headers = {}
    if isinstance(exc, NotAuthenticated):
        headers["WWW-Authenticate"] = f'Identity header="{identity.HEADER}"'
    return JSONResponse(exc.body(), status_code=exc.status_code, headers=headers)


async def _server_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error", extra={"path": request.url.path})
    return JSONResponse({"detail": "A server error occurred."}, status_code=500)


def create_app(settings: Settings | None = None, *, engine: Engine | None = None) -> Starlette:
    """The service, ready to serve; `engine` lets tests share one database."""
    settings = settings or Settings.from_env()
    engine = engine or make_engine(settings.database_url)
    metrics = Metrics()
    faults = FaultSwitch(settings.fail_rate)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if settings.migrate_on_start:
            await run_in_threadpool(migrations.upgrade, engine)
        if not settings.identity_secret:
            log.warning("STRANGLER_IDENTITY_SECRET is not set: every staff write will be 401")
        log.info("catalog service started", extra={"fail_rate": faults.rate})
        try:
            yield
        finally:
            engine.dispose()

    app = Starlette(
        routes=routes,
        middleware=[Middleware(TrustedProxyMiddleware, networks=parse_networks(settings.trusted_proxies)),
                    Middleware(ObserveMiddleware, metrics=metrics, faults=faults)],
        exception_handlers={APIError: _api_error, Exception: _server_error},
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.metrics = metrics
    app.state.faults = faults
    app.state.telemetry = tracing.instrument(app, engine)
    return app
