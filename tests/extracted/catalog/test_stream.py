"""After the snapshot, the monolith's catalog writes stream into the service's schema.

The monolith still owns the writes (step 3): a staff price change made through its API,
a stock change made by "inventory" and a new product all reach the service through the
`catalog` CDC stream, and the service then answers exactly as the monolith does.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from extracted.catalog import create_app, migrations
from extracted.kit.db import make_engine
from tests.extracted.catalog.asgi import asgi_client
from tests.extracted.catalog.conftest import settings_for
from tests.extracted.catalog.shop import HOST, catalog_stream, drop_stream, run_stream, shop
from tests.extracted.catalog.test_writes import header

pytestmark = pytest.mark.slow


def test_monolith_writes_reach_the_service_through_the_stream(tmp_path: Path) -> None:
    monolith_url = f"sqlite:///{tmp_path / 'monolith.sqlite3'}"
    catalog_url = f"sqlite:///{tmp_path / 'catalog.sqlite3'}"
    with shop(monolith_url) as monolith:
        engine = make_engine(catalog_url)
        migrations.upgrade(engine)
        cfg = catalog_stream(monolith_url=monolith_url, catalog_url=catalog_url)
        app = create_app(settings_for(catalog_url, migrate_on_start=False), engine=engine)
        try:
            run_stream(cfg, until=lambda: True)  # snapshot; the triggers now capture changes
            token = httpx.post(
                str(monolith.base_url.join("/api/auth/login/")),
                json={"username": "staff1", "password": "shop-password"}, headers={"Host": HOST},
            ).json()["token"]
            staff = {"Authorization": f"Token {token}"}
            assert monolith.patch("/api/products/3/", json={"price": "77.70"}, headers=staff).status_code == 200
            created = monolith.post(
                "/api/products/", json={"name": "Streamed Lamp", "category": 2, "price": "5.55"}, headers=staff
            )
            assert created.status_code == 201, created.text
            new_id = created.json()["id"]
            shop_db = make_engine(monolith_url)
            with shop_db.begin() as conn:  # inventory's write to the denormalised column (T4)
                conn.exec_driver_sql("UPDATE catalog_product SET stock_count = 4242 WHERE id = 3")
            shop_db.dispose()

            with asgi_client(app) as service:
                def caught_up() -> bool:
                    answer = service.get(f"/api/products/{new_id}/")
                    return answer.status_code == 200 and service.get("/api/products/3/").json()["stock_count"] == 4242

                deadline = time.monotonic() + 60
                run_stream(cfg, until=lambda: caught_up() or time.monotonic() > deadline)
                assert caught_up(), "the stream did not deliver the monolith's writes within 60 s"
                for path in ("/api/products/3/", f"/api/products/{new_id}/", "/api/products/3/price-history/"):
                    assert service.get(path).json() == monolith.get(path).json(), path
                assert service.get("/api/products/3/").json()["price"] == "77.70"
        finally:
            drop_stream(cfg)
            engine.dispose()


def test_a_product_order_lines_reference_is_refused_deletion_on_both_sides_alike(tmp_path: Path) -> None:
    """Issue 11: `DELETE /api/products/107` was refused by the monolith (PROTECT foreign key
    from order lines) and accepted by the service, so the row vanished from one side only.
    The stream now carries which products order lines reference; both answer the same."""
    monolith_url = f"sqlite:///{tmp_path / 'monolith.sqlite3'}"
    catalog_url = f"sqlite:///{tmp_path / 'catalog.sqlite3'}"
    with shop(monolith_url) as monolith:
        engine = make_engine(catalog_url)
        migrations.upgrade(engine)
        cfg = catalog_stream(monolith_url=monolith_url, catalog_url=catalog_url)
        app = create_app(settings_for(catalog_url, migrate_on_start=False), engine=engine)
        try:
            run_stream(cfg, until=lambda: True)  # the initial copy, order-line references too
            shop_db = make_engine(monolith_url)
            with shop_db.connect() as conn:
                referenced = {r[0] for r in conn.exec_driver_sql("SELECT product_id FROM orders_orderline")}
                free = conn.exec_driver_sql(
                    "SELECT min(id) FROM catalog_product WHERE id NOT IN "
                    "(SELECT product_id FROM orders_orderline) AND id NOT IN "
                    "(SELECT product_id FROM inventory_reservation)").scalar_one()
            shop_db.dispose()
            protected = 107 if 107 in referenced else min(referenced)
            token = httpx.post(
                str(monolith.base_url.join("/api/auth/login/")),
                json={"username": "staff1", "password": "shop-password"}, headers={"Host": HOST},
            ).json()["token"]
            with asgi_client(app) as service:
                refused = monolith.delete(f"/api/products/{protected}/", headers={"Authorization": f"Token {token}"})
                answered = service.delete(f"/api/products/{protected}/", headers=header())
                assert (refused.status_code, answered.status_code) == (400, 400)
                assert answered.json() == refused.json()
                assert service.get(f"/api/products/{protected}/").json() == monolith.get(f"/api/products/{protected}/").json()
                assert service.delete(f"/api/products/{free}/", headers=header()).status_code == 204
        finally:
            drop_stream(cfg)
            engine.dispose()
