"""Pagination links name the host the client used, so following `next` stays behind the router."""

from __future__ import annotations

from sqlalchemy import Engine, insert

from extracted.catalog.models import categories, products
from tests.extracted.catalog.asgi import ASGIClient

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
