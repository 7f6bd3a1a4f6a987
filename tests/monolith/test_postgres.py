"""The shop on a real PostgreSQL server: migrate, seed, serve, and the main flows work.

Runs the shop in subprocesses with ``DATABASE_URL`` set (the test process's own Django
stays on SQLite), against the throwaway server from devstack.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import psycopg2
import pytest

from loadgen.engine import TrafficConfig, run_traffic
from stack.localshop import LocalShop

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@pytest.fixture(scope="module")
def pg_shop(pg_server, tmp_path_factory) -> Iterator[LocalShop]:  # type: ignore[no-untyped-def]
    dsn = pg_server.create_database("monolith_smoke")
    shop = LocalShop(database_url=dsn, log_path=tmp_path_factory.mktemp("pg") / "shop.log")
    try:
        shop.prepare(size="small")
        shop.start()
        yield shop
    finally:
        shop.stop()


def test_seeded_tables_live_in_postgres(pg_shop: LocalShop) -> None:
    with psycopg2.connect(pg_shop.database_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM catalog_product")
        assert cur.fetchone() == (200,)
        cur.execute("SELECT count(*) FROM orders_orderline")
        assert cur.fetchone()[0] > 60


def test_api_on_postgres(pg_shop: LocalShop) -> None:
    base = pg_shop.base_url
    listing = httpx.get(f"{base}/api/products/?category=2&ordering=-price&min_price=5").json()
    assert listing["count"] > 0
    assert httpx.get(f"{base}/api/products/?min_price=abc").status_code == 400
    login = httpx.post(f"{base}/api/auth/login/",
                       json={"username": "customer2", "password": "shop-password"})
    auth = {"Authorization": f"Token {login.json()['token']}"}
    product = httpx.get(f"{base}/api/products/?in_stock=true&ordering=-stock_count").json()["results"][0]
    assert httpx.post(f"{base}/api/cart/items/", json={"product": product["id"]},
                      headers=auth).status_code == 201
    placed = httpx.post(f"{base}/api/orders/", json={}, headers=auth)
    assert placed.status_code == 201, placed.text
    assert placed.json()["id"] == 61  # the sequence continues after the seeded ids
    assert placed.json()["status"] == "paid"
    after = httpx.get(f"{base}/api/products/{product['id']}/").json()
    assert after["stock_count"] == product["stock_count"] - 1
    staff = httpx.post(f"{base}/api/auth/login/",
                       json={"username": "staff1", "password": "shop-password"}).json()
    report = httpx.get(f"{base}/api/reports/sales/",
                       headers={"Authorization": f"Token {staff['token']}"})
    assert report.status_code == 200 and report.json()["results"]


def test_traffic_on_postgres(pg_shop: LocalShop) -> None:
    summary = run_traffic(TrafficConfig(base_url=pg_shop.base_url, rate=30, duration=2))
    assert summary["ok"], summary["failures"]
