"""HTTP routes: thin handlers that parse, call a selector or service, and shape the answer.

The `/api/` paths, bodies, status codes and error shapes are the monolith's (see
README.md for the few intended differences). Database work is synchronous SQLAlchemy run
in Starlette's threadpool, one connection (and for writes one transaction) per request.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from extracted.catalog import (
    filters,
    migrations,
    schemas,
    selectors,
    services,
)
from extracted.catalog.config import Settings
from extracted.kit import identity, pagination
from extracted.kit.errors import NotFound, ParseError, ValidationError

Handler = Callable[[Request], Awaitable[Response]]
ALL = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def _engine(request: Request) -> Engine:
    return request.app.state.engine  # type: ignore[no-any-return]


def _settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


def _methods(**handlers: Handler) -> Handler:
    """One endpoint per path, dispatching on method; others get DRF's 405 body."""
    table = {method.upper(): handler for method, handler in handlers.items()}
    if "GET" in table:
        table["HEAD"] = table["GET"]
    allow = ", ".join(table)

    async def endpoint(request: Request) -> Response:
        handler = table.get(request.method)
        if handler is None:
            return JSONResponse(
                {"detail": f'Method "{request.method}" not allowed.'},
                status_code=405,
                headers={"Allow": allow},
            )
        return await handler(request)

    return endpoint


# ---- products ---------------------------------------------------------------------------


def _envelope(request: Request, page: pagination.Page, count: int, results: list[Any]) -> dict[str, Any]:
    """DRF's page body: count, absolute next/previous links (as the client addressed us), results."""
    url = pagination.public_url(str(request.url), request.headers.get("x-forwarded-host"))
    next_url, previous_url = pagination.links(url, page)
    return {"count": count, "next": next_url, "previous": previous_url, "results": results}


def _product_page(engine: Engine, request: Request) -> dict[str, Any]:
    params = request.query_params
    with engine.connect() as conn:
        query = filters.product_filters(params, category_exists=_exists(conn))
        size = pagination.page_size(params, _settings(request).page_size)
        count = selectors.product_count(conn, filters=query)
        page = pagination.page(params, size=size, count=count)
        rows = selectors.product_list(conn, filters=query, offset=page.offset, limit=page.size)
    return _envelope(request, page, count, [schemas.product_out(row) for row in rows])


async def product_list(request: Request) -> Response:
    return JSONResponse(await run_in_threadpool(_product_page, _engine(request), request))


def _product_detail(
    engine: Engine, raw_pk: str | int, params: QueryParams | None = None
) -> dict[str, Any]:
    """One product. Like the monolith, the list's filters apply here too (a quirk of DRF's
    `get_object`): `/api/products/7/?category=2` is 404 unless product 7 is in category 2."""
    with engine.connect() as conn:
        row = _find_product(conn, raw_pk, params)
    return schemas.product_out(row)


def _find_product(conn: Connection, raw_pk: str | int, params: QueryParams | None) -> Any:
    query = filters.ProductFilters()
    if params is not None:
        query = filters.product_filters(params, category_exists=_exists(conn))
    product_id = raw_pk if isinstance(raw_pk, int) else filters.parse_id(raw_pk)
    if product_id is None:
        raise NotFound()
    row = None
    if filters.in_key_range(product_id):
        row = selectors.product_get(conn, product_id=product_id, filters=query)
    if row is None:
        raise NotFound("No Product matches the given query.")
    return row


async def product_detail(request: Request) -> Response:
    return JSONResponse(
        await run_in_threadpool(
            _product_detail, _engine(request), request.path_params["pk"], request.query_params
        )
    )


def _price_history_page(engine: Engine, request: Request) -> dict[str, Any]:
    params = request.query_params
    with engine.connect() as conn:
        product = _find_product(conn, request.path_params["pk"], params)
        size = pagination.page_size(params, _settings(request).page_size)
        count = selectors.price_change_count(conn, product_id=product["id"])
        page = pagination.page(params, size=size, count=count)
        rows = selectors.price_change_list(
            conn, product_id=product["id"], offset=page.offset, limit=page.size
        )
    return _envelope(request, page, count, [schemas.price_change_out(row) for row in rows])


async def price_history(request: Request) -> Response:
    return JSONResponse(await run_in_threadpool(_price_history_page, _engine(request), request))


async def product_create(request: Request) -> Response:
    identity.require_staff(request.headers.get(identity.HEADER), _settings(request).identity_secret)
    data = await _json_body(request)
    engine = _engine(request)

    def create() -> dict[str, Any]:
        with engine.begin() as conn:
            values = schemas.product_payload(data, partial=False, category_exists=_exists(conn))
            product_id = services.product_create(conn, values=values)
        return _product_detail(engine, product_id)

    return JSONResponse(await run_in_threadpool(create), status_code=201)


def _product_update(*, partial: bool) -> Handler:
    async def handler(request: Request) -> Response:
        who = identity.require_staff(
            request.headers.get(identity.HEADER), _settings(request).identity_secret
        )
        product_id = filters.parse_id(request.path_params["pk"])
        data = await _json_body(request)
        engine = _engine(request)

        def write() -> dict[str, Any]:
            if product_id is None:
                raise NotFound()
            with engine.begin() as conn:
                if not filters.in_key_range(product_id) or selectors.product_get(conn, product_id=product_id) is None:
                    raise NotFound("No Product matches the given query.")
                values = schemas.product_payload(data, partial=partial, category_exists=_exists(conn))
                services.product_update(
                    conn, product_id=product_id, values=values, changed_by=filters.parse_int(who.sub)
                )
            return _product_detail(engine, product_id)

        return JSONResponse(await run_in_threadpool(write))

    return handler


async def product_delete(request: Request) -> Response:
    identity.require_staff(request.headers.get(identity.HEADER), _settings(request).identity_secret)
    product_id = filters.parse_id(request.path_params["pk"])
    engine = _engine(request)

    def remove() -> None:
        if product_id is None:
            raise NotFound()
        with engine.begin() as conn:
            if not filters.in_key_range(product_id) or not services.product_delete(conn, product_id=product_id):
                raise NotFound("No Product matches the given query.")

    await run_in_threadpool(remove)
    return Response(status_code=204)


# ---- categories -------------------------------------------------------------------------


def _category_page(engine: Engine, request: Request) -> dict[str, Any]:
    params = request.query_params
    with engine.connect() as conn:
        query = filters.category_filters(params, category_exists=_exists(conn))
        size = pagination.page_size(params, _settings(request).page_size)
        count = selectors.category_count(conn, filters=query)
        page = pagination.page(params, size=size, count=count)
        rows = selectors.category_list(conn, filters=query, offset=page.offset, limit=page.size)
    return _envelope(request, page, count, [schemas.category_out(row) for row in rows])


async def category_list(request: Request) -> Response:
    return JSONResponse(await run_in_threadpool(_category_page, _engine(request), request))


def _category_detail(engine: Engine, request: Request) -> dict[str, Any]:
    with engine.connect() as conn:
        query = filters.category_filters(request.query_params, category_exists=_exists(conn))
        category_id = filters.parse_id(request.path_params["pk"])
        if category_id is None:
            raise NotFound()
        row = None
        if filters.in_key_range(category_id):
            row = selectors.category_get(conn, category_id=category_id, filters=query)
    if row is None:
        raise NotFound("No Category matches the given query.")
    return schemas.category_out(row)


async def category_detail(request: Request) -> Response:
    return JSONResponse(await run_in_threadpool(_category_detail, _engine(request), request))


# ---- operations -------------------------------------------------------------------------


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


def _readiness(engine: Engine) -> tuple[int, dict[str, Any]]:
    head = migrations.head_revision()
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        current = migrations.current_revision(engine)
    except SQLAlchemyError as exc:
        return 503, {"status": "unavailable", "reason": f"database unreachable: {type(exc).__name__}"}
    if current != head:
        return 503, {
            "status": "unavailable",
            "reason": f"migrations not applied: database at {current}, code at {head}",
        }
    return 200, {"status": "ready", "revision": current}


async def readyz(request: Request) -> Response:
    status, body = await run_in_threadpool(_readiness, _engine(request))
    return JSONResponse(body, status_code=status)


async def metrics(request: Request) -> Response:
    registry = request.app.state.metrics
    registry.set_fail_rate(request.app.state.faults.rate)
    return Response(registry.render(), media_type="text/plain; version=0.0.4; charset=utf-8")


async def fail_rate_get(request: Request) -> Response:
    return JSONResponse({"fail_rate": request.app.state.faults.rate})


async def fail_rate_set(request: Request) -> Response:
    """`PUT /_catalog/fail-rate {"rate": 0..1}` with `Authorization: Bearer <admin token>`."""
    settings = _settings(request)
    token = settings.admin_token or settings.admin_token_from_file()
    given = request.headers.get("authorization", "")
    if not token:
        return JSONResponse({"detail": "Admin API disabled: set CATALOG_ADMIN_TOKEN, or start the stack "
                             f"(`strangler up` writes {settings.admin_token_file})."}, status_code=403)
    if not given.startswith("Bearer "):
        return JSONResponse({"detail": "Authentication credentials were not provided."}, status_code=401)
    if not _same(given.removeprefix("Bearer "), token):
        return JSONResponse({"detail": "Invalid admin token."}, status_code=403)
    data = await _json_body(request)
    rate = data.get("rate") if isinstance(data, dict) else None
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1:
        raise ValidationError({"rate": ["A number from 0 to 1 is required."]})
    request.app.state.faults.set(float(rate))
    return JSONResponse({"fail_rate": request.app.state.faults.rate})


# ---- helpers ----------------------------------------------------------------------------


def _exists(conn: Connection) -> Callable[[int], bool]:
    return lambda key: selectors.category_exists(conn, category_id=key)


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    try:
        return json.loads(raw) if raw else {}
    except (ValueError, UnicodeDecodeError) as exc:
        raise ParseError(f"JSON parse error - {exc}") from None


routes = [
    Route("/api/products/", _methods(get=product_list, post=product_create), methods=ALL),
    Route(
        "/api/products/{pk}/",
        _methods(
            get=product_detail,
            put=_product_update(partial=False),
            patch=_product_update(partial=True),
            delete=product_delete,
        ),
        methods=ALL,
    ),
    Route("/api/products/{pk}/price-history/", _methods(get=price_history), methods=ALL),
    Route("/api/categories/", _methods(get=category_list), methods=ALL),
    Route("/api/categories/{pk}/", _methods(get=category_detail), methods=ALL),
    Route("/healthz", healthz),
    Route("/readyz", readyz),
    Route("/metrics", metrics),
    Route("/_catalog/fail-rate", _methods(get=fail_rate_get, put=fail_rate_set), methods=ALL),
]
