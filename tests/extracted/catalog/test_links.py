"""Pagination links name the host the client used, so following `next` stays behind the router."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, insert

from extracted.catalog.app import create_app
from extracted.catalog.models import categories, products
from extracted.kit.errors import ConfigError
from extracted.kit.proxies import TrustedProxyMiddleware, parse_networks
from tests.extracted.catalog.asgi import ASGIClient, asgi_client
from tests.extracted.catalog.conftest import settings_for

NOW = "2026-01-01 00:00:00"


def _two_products(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(insert(categories), [{"id": 1, "name": "Kitchen", "created_at": NOW}])
        conn.execute(insert(products), [
            {"id": i, "name": f"Mug {i}", "description": "d", "category_id": 1, "price_cents": 100 * i,
             "stock_count": 1, "is_active": True, "created_at": NOW, "updated_at": NOW}
            for i in (1, 2)
        ])


def test_links_use_the_forwarded_host_behind_the_router(client: ASGIClient, catalog_engine: Engine) -> None:
    _two_products(catalog_engine)
    body = client.get("/api/products/?page_size=1", headers={"X-Forwarded-Host": "shop.example:8080"}).json()
    assert body["next"] == "http://shop.example:8080/api/products/?page=2&page_size=1"
    back = client.get(body["next"], headers={"X-Forwarded-Host": "shop.example:8080"}).json()
    assert back["previous"] == "http://shop.example:8080/api/products/?page_size=1"


def test_links_use_the_request_host_without_a_router(client: ASGIClient, catalog_engine: Engine) -> None:
    _two_products(catalog_engine)
    body = client.get("/api/products/?page_size=1").json()
    assert "shop.example" not in body["next"] and body["next"].endswith("/api/products/?page=2&page_size=1")


def test_forwarded_headers_from_anyone_but_the_router_are_ignored(catalog_url: str, catalog_engine: Engine) -> None:
    # Reaching the service directly (not from CATALOG_TRUSTED_PROXIES, loopback by default)
    # must not let anyone poison the pagination links.
    app = create_app(settings_for(catalog_url), engine=catalog_engine)
    with asgi_client(app, base_url="http://catalog.internal", peer=("203.0.113.9", 5555)) as direct:
        _two_products(catalog_engine)
        body = direct.get("/api/products/?page_size=1", headers={
            "X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https"}).json()
    assert body["next"] == "http://catalog.internal/api/products/?page=2&page_size=1"


def test_the_router_reports_scheme_and_client(client: ASGIClient, catalog_engine: Engine) -> None:
    _two_products(catalog_engine)
    body = client.get("/api/products/?page_size=1", headers={
        "X-Forwarded-Host": "shop.example", "X-Forwarded-Proto": "https"}).json()
    assert body["next"] == "https://shop.example/api/products/?page=2&page_size=1"
    trusted = TrustedProxyMiddleware(lambda *a: None, networks=parse_networks("127.0.0.1", name="CATALOG_TRUSTED_PROXIES"))  # type: ignore[arg-type]
    scope = trusted._believe({"type": "http", "client": ("127.0.0.1", 1), "scheme": "http", "headers": [
        (b"x-forwarded-for", b"6.6.6.6, 203.0.113.7, 127.0.0.1")]})
    assert scope["client"] == ("203.0.113.7", 0)


def test_a_bad_trusted_proxies_list_is_refused() -> None:
    with pytest.raises(ConfigError, match="CATALOG_TRUSTED_PROXIES"):
        parse_networks("127.0.0.1, not-a-cidr", name="CATALOG_TRUSTED_PROXIES")
