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

from extracted.catalog import migrations
from extracted.catalog.config import TRUSTED_PROXIES_ENV, Settings
from extracted.catalog.routes import routes
from extracted.kit import identity, tracing
from extracted.kit.db import make_engine
from extracted.kit.errors import APIError, NotAuthenticated
from extracted.kit.metrics import Metrics
from extracted.kit.middleware import FaultSwitch, ObserveMiddleware
from extracted.kit.proxies import TrustedProxyMiddleware, parse_networks

LOGGER = "extracted.catalog"  # and `.access` for the access log
log = logging.getLogger(LOGGER)
SERVICE = "catalog"  # its metrics' prefix and its spans' service name


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
    metrics = Metrics(SERVICE)
    faults = FaultSwitch(settings.fail_rate, env="CATALOG_FAIL_RATE")

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
        middleware=[Middleware(TrustedProxyMiddleware,
                               networks=parse_networks(settings.trusted_proxies, name=TRUSTED_PROXIES_ENV)),
                    Middleware(ObserveMiddleware, metrics=metrics, faults=faults, access_log=f"{LOGGER}.access")],
        exception_handlers={APIError: _api_error, Exception: _server_error},
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.metrics = metrics
    app.state.faults = faults
    app.state.telemetry = tracing.instrument(app, engine, service_name=SERVICE)
    return app
