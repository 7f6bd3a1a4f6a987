"""Health, readiness (migrations applied), metrics, request ids, JSON logs, the fault switch."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from sqlalchemy import Engine

from extracted.catalog import create_app, migrations
from extracted.kit.logs import JSONFormatter
from tests.extracted.catalog.asgi import ASGIClient, asgi_client
from tests.extracted.catalog.conftest import ADMIN_TOKEN, settings_for


def test_healthz_and_readyz_after_start_up_migrations(client: ASGIClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "revision": migrations.head_revision()}


def test_readyz_is_503_until_migrations_are_applied(catalog_url: str, catalog_engine: Engine) -> None:
    app = create_app(settings_for(catalog_url, migrate_on_start=False), engine=catalog_engine)
    with asgi_client(app) as client:
        assert client.get("/healthz").status_code == 200
        not_ready = client.get("/readyz")
        assert not_ready.status_code == 503
        assert "migrations not applied" in not_ready.json()["reason"]
        migrations.upgrade(catalog_engine)
        assert client.get("/readyz").status_code == 200
        migrations.downgrade(catalog_engine, "base")
        assert client.get("/readyz").status_code == 503


def test_readyz_is_503_when_the_database_is_unreachable() -> None:
    from devstack import free_port

    url = f"postgresql://nobody@127.0.0.1:{free_port()}/catalog?connect_timeout=2"
    app = create_app(settings_for(url, migrate_on_start=False))
    with asgi_client(app) as client:
        assert client.get("/healthz").status_code == 200
        response = client.get("/readyz")
    assert response.status_code == 503
    assert "database unreachable" in response.json()["reason"]


def test_metrics_count_requests_by_route_template(client: ASGIClient) -> None:
    client.get("/api/products/")
    client.get("/api/products/1/")
    client.get("/api/products/2/")
    text = client.get("/metrics").text
    assert 'catalog_http_requests_total{method="GET",route="/api/products/{pk}/",status="404"} 2' in text
    assert 'catalog_http_requests_total{method="GET",route="/api/products/",status="200"} 1' in text
    assert "catalog_http_request_duration_seconds_bucket" in text


def test_request_id_is_echoed_and_logged_as_json(client: ASGIClient, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="extracted.catalog.access"):
        response = client.get("/api/products/", headers={"X-Request-ID": "req-42"})
    assert response.headers["x-request-id"] == "req-42"
    record = next(r for r in caplog.records if r.name == "extracted.catalog.access")
    line = json.loads(JSONFormatter().format(record))
    assert line["request_id"] == "req-42"
    assert (line["route"], line["status"], line["method"]) == ("/api/products/", 200, "GET")
    generated = client.get("/healthz").headers["x-request-id"]
    assert len(generated) == 32


def test_fail_rate_one_fails_every_api_request_but_not_health(catalog_url: str, catalog_engine: Engine) -> None:
    app = create_app(settings_for(catalog_url, fail_rate=1.0), engine=catalog_engine)
    with asgi_client(app) as client:
        failed = client.get("/api/products/")
        assert failed.status_code == 500
        assert failed.json() == {"detail": "Injected failure (CATALOG_FAIL_RATE)."}
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 200
        assert "catalog_injected_failures_total 1" in client.get("/metrics").text


def test_fail_rate_admin_toggle(client: ASGIClient) -> None:
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    assert client.put("/_catalog/fail-rate", json={"rate": 1}).status_code == 401
    assert client.put("/_catalog/fail-rate", json={"rate": 1}, headers={"Authorization": "Bearer x"}).status_code == 403
    bad = client.put("/_catalog/fail-rate", json={"rate": 2}, headers=auth)
    assert bad.status_code == 400 and "rate" in bad.json()
    assert client.get("/api/products/").status_code == 200  # refused toggles changed nothing
    assert client.put("/_catalog/fail-rate", json={"rate": 1}, headers=auth).json() == {"fail_rate": 1.0}
    assert client.get("/api/products/").status_code == 500
    assert client.put("/_catalog/fail-rate", json={"rate": 0}, headers=auth).status_code == 200
    assert client.get("/api/products/").status_code == 200


def test_a_half_fail_rate_fails_some_and_serves_the_rest(catalog_url: str, catalog_engine: Engine) -> None:
    app = create_app(settings_for(catalog_url, fail_rate=0.5), engine=catalog_engine)
    with asgi_client(app) as client:
        statuses = [client.get("/api/categories/").status_code for _ in range(200)]
    assert set(statuses) == {200, 500}
    assert 40 < statuses.count(500) < 160


def test_fail_rate_takes_the_stack_admin_token_file_read_at_each_request(
        catalog_url: str, catalog_engine: Engine, tmp_path: Path) -> None:
    """Under `strangler up` no token is in the catalog's environment: it reads the file `up`
    writes, when the request comes (the file may appear after the service started)."""
    token_file = tmp_path / "admin-token"
    app = create_app(settings_for(catalog_url, admin_token=None, admin_token_file=token_file), engine=catalog_engine)
    with asgi_client(app) as client:
        refused = client.put("/_catalog/fail-rate", json={"rate": 1}, headers={"Authorization": "Bearer stack"})
        assert refused.status_code == 403 and str(token_file) in refused.json()["detail"]
        token_file.write_text("stack\n")
        assert client.put("/_catalog/fail-rate", json={"rate": 0.5},
                          headers={"Authorization": "Bearer stack"}).json() == {"fail_rate": 0.5}
        assert client.put("/_catalog/fail-rate", json={"rate": 1},
                          headers={"Authorization": "Bearer other"}).status_code == 403
