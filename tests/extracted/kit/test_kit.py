"""The shared kit serves a service that is not the catalog: what a second service gets from it
(its own metric prefix, fault switch, access log, migrations lock) and that it names none."""

from __future__ import annotations

import logging
import re
import threading
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, text
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from extracted.kit.db import make_engine
from extracted.kit.metrics import Metrics
from extracted.kit.middleware import FaultSwitch, ObserveMiddleware
from extracted.kit.migrations import Migrations
from tests.extracted.catalog.asgi import asgi_client

KIT = Path(__file__).resolve().parents[3] / "extracted" / "kit"


def orders_app(rate: float) -> Starlette:
    async def order(request: Request) -> JSONResponse:
        return JSONResponse({"id": int(request.path_params["id"])})

    app = Starlette(routes=[Route("/api/orders/{id:int}/", order)], middleware=[
        Middleware(ObserveMiddleware, metrics=Metrics("orders"), access_log="extracted.orders.access",
                   faults=FaultSwitch(rate, env="ORDERS_FAIL_RATE"))])
    return app


def test_a_second_service_gets_its_own_series_fault_body_and_access_log(caplog: pytest.LogCaptureFixture) -> None:
    app = orders_app(1.0)
    with caplog.at_level(logging.INFO, logger="extracted.orders.access"), asgi_client(app) as client:
        failed = client.get("/api/orders/7/", headers={"x-request-id": "r-1"})
    assert failed.status_code == 500 and failed.json() == {"detail": "Injected failure (ORDERS_FAIL_RATE)."}
    assert failed.headers["x-request-id"] == "r-1"
    (record,) = [r for r in caplog.records if r.name == "extracted.orders.access"]
    assert (record.request_id, record.status) == ("r-1", 500)  # type: ignore[attr-defined]
    middleware = next(m for m in app.user_middleware)
    metrics = middleware.kwargs["metrics"]
    names = {f.name for f in text_string_to_metric_families(metrics.render())}
    assert {"orders_http_requests", "orders_injected_failures", "orders_fail_rate"} <= names
    assert not any(n.startswith("catalog") for n in names)
    with asgi_client(orders_app(0.0)) as client:
        assert client.get("/api/orders/7/").json() == {"id": 7}


def test_migrations_of_two_copies_run_one_at_a_time(tmp_path: Path) -> None:
    """The kit's lock, on SQLite: a second upgrade waits for the first (the catalog's own
    scripts as the service's, a lock key of its own)."""
    scripts = KIT.parent / "catalog" / "alembic"
    migrations = Migrations(scripts, lock_key=42)
    engine: Engine = make_engine(f"sqlite:///{tmp_path / 'orders.sqlite3'}")
    order: list[str] = []
    with migrations.lock(engine):
        waiting = threading.Thread(target=lambda: (migrations.upgrade(engine), order.append("upgraded")))
        waiting.start()
        waiting.join(timeout=2.0)  # an upgrade on SQLite takes well under that
        assert waiting.is_alive(), "the second upgrade did not wait for the lock"
        order.append("lock released")
    waiting.join(timeout=60)
    assert order == ["lock released", "upgraded"]
    assert migrations.current_revision(engine) == migrations.head_revision()
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1
    engine.dispose()


def test_the_kit_names_no_service() -> None:
    named = [f"{p.name}:{n}: {line.strip()}" for p in sorted(KIT.glob("*.py"))
             for n, line in enumerate(p.read_text().splitlines(), 1)
             if re.search(r"catalog|orders", line, re.I) and "e.g." not in line and "`catalog_…`" not in line]
    assert named == []
