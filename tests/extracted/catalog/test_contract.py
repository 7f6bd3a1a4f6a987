"""Contract: the service answers the monolith's catalog requests the same way, over the same data.

For SQLite and for PostgreSQL: the monolith is migrated, seeded and served by its real
server; the service's database is filled ONLY by the CDC snapshot of the `catalog` stream
(`streams.yaml`); then a fixed list of requests and hypothesis-generated queries go to both,
and `contract.compare` checks the answers (intended differences: `contract.INTENDED_DIFFERENCES`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings

from extracted.catalog import create_app, migrations
from extracted.catalog.filters import CATEGORY_ORDERING, PRODUCT_ORDERING
from extracted.kit.db import make_engine
from tests.extracted.catalog import contract
from tests.extracted.catalog.asgi import ASGIClient, asgi_client
from tests.extracted.catalog.conftest import settings_for
from tests.extracted.catalog.shop import load_via_cdc, shop

pytestmark = pytest.mark.slow


@dataclass
class Sides:
    monolith: httpx.Client
    monolith_tokens: dict[str, str]
    service: ASGIClient
    products: dict[int, dict[str, Any]]
    categories: dict[int, dict[str, Any]]

    def check(self, path: str, params: dict[str, str]) -> None:
        if path.startswith("/api/categories/"):
            allowed, rows = CATEGORY_ORDERING, self.categories
        elif path.endswith("/price-history/"):
            allowed, rows = (), {}
        else:
            allowed, rows = PRODUCT_ORDERING, self.products
        contract.compare(
            self.monolith.get(path, params=params),
            self.service.get(path, params=params),
            ordering=params.get("ordering"),
            allowed=allowed,
            known_rows=rows,
        )


def _all_rows(client: httpx.Client, path: str) -> dict[int, dict[str, Any]]:
    rows: dict[int, dict[str, Any]] = {}
    url: str | None = f"{path}?page_size=100"
    while url:
        body = client.get(url.replace("http://testserver", "")).json()
        rows.update({row["id"]: row for row in body["results"]})
        url = body["next"]
    return rows


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def sides(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sides]:
    if request.param == "sqlite":
        folder: Path = tmp_path_factory.mktemp("contract")
        monolith_url = f"sqlite:///{folder / 'monolith.sqlite3'}"
        catalog_url = f"sqlite:///{folder / 'catalog.sqlite3'}"
    else:
        pg = request.getfixturevalue("pg_server")
        monolith_url = pg.create_database("contract_monolith")
        catalog_url = pg.create_database("contract_catalog")
    with shop(monolith_url) as monolith:
        engine = make_engine(catalog_url)
        try:
            migrations.upgrade(engine)
            load_via_cdc(monolith_url=monolith_url, catalog_url=catalog_url)
            app = create_app(settings_for(catalog_url, migrate_on_start=False), engine=engine)
            with asgi_client(app) as service:
                yield Sides(
                    monolith=monolith,
                    monolith_tokens={user: _token(monolith, user) for user in ("staff1", "customer1")},
                    service=service,
                    products=_all_rows(monolith, "/api/products/"),
                    categories=_all_rows(monolith, "/api/categories/"),
                )
        finally:
            engine.dispose()


def _token(client: httpx.Client, username: str) -> str:
    # A separate request without the shared client's cookie jar: no session leaks into reads.
    answer = httpx.post(
        str(client.base_url.join("/api/auth/login/")),
        json={"username": username, "password": "shop-password"},
        headers={"Host": "testserver"},
    )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["token"])


def test_the_snapshot_copied_every_row(sides: Sides) -> None:
    assert len(sides.products) == 200 and len(sides.categories) == 12
    assert _all_rows_service(sides.service, "/api/products/") == sides.products
    assert _all_rows_service(sides.service, "/api/categories/") == sides.categories


def _all_rows_service(client: ASGIClient, path: str) -> dict[int, dict[str, Any]]:
    rows: dict[int, dict[str, Any]] = {}
    url: str | None = f"{path}?page_size=100"
    while url:
        body = client.get(url).json()
        rows.update({row["id"]: row for row in body["results"]})
        url = body["next"]
    return rows


@pytest.mark.parametrize(("path", "params"), contract.FIXED_REQUESTS)
def test_fixed_requests(sides: Sides, path: str, params: dict[str, str]) -> None:
    sides.check(path, params)


@settings(max_examples=int(os.environ.get("CATALOG_CONTRACT_EXAMPLES", "60")), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(params=contract.product_queries)
def test_generated_product_queries(sides: Sides, params: dict[str, str]) -> None:
    sides.check("/api/products/", params)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=contract.detail_paths, params=contract.product_queries)
def test_generated_detail_requests(sides: Sides, path: str, params: dict[str, str]) -> None:
    sides.check(path, params)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(params=contract.category_queries)
def test_generated_category_queries(sides: Sides, params: dict[str, str]) -> None:
    sides.check("/api/categories/", params)


WRITE_REFUSALS: list[tuple[str, str, object]] = [
    ("POST", "/api/products/", {}),
    ("POST", "/api/products/", {"name": " ", "category": 1, "price": "1.00"}),
    ("POST", "/api/products/", {"name": "x" * 201, "category": "abc", "price": "0"}),
    ("POST", "/api/products/", {"name": "n", "category": 999, "price": "1.234"}),
    ("POST", "/api/products/", {"name": "n", "category": True, "price": "123456789.00"}),
    ("POST", "/api/products/", {"name": None, "category": [1], "price": "abc", "is_active": "maybe"}),
    ("POST", "/api/products/", {"name": "n", "category": 1, "price": "NaN"}),
    ("POST", "/api/products/", {"name": "n", "category": 1, "price": "-1"}),
    ("PATCH", "/api/products/3/", {"price": "0.001"}),
    ("PATCH", "/api/products/3/", {"name": ""}),
    ("PUT", "/api/products/3/", {"name": "only a name"}),
    ("PATCH", "/api/products/99999/", {"price": "1.00"}),
]


@pytest.mark.parametrize(("method", "path", "body"), WRITE_REFUSALS)
def test_invalid_staff_writes_are_refused_the_same_way(
    sides: Sides, method: str, path: str, body: object
) -> None:
    from tests.extracted.catalog.test_writes import header

    monolith = sides.monolith.request(
        method, path, json=body, headers={"Authorization": f"Token {sides.monolith_tokens['staff1']}"}
    )
    service = sides.service.request(method, path, json=body, headers=header(staff=True))
    assert (service.status_code, service.json()) == (monolith.status_code, monolith.json())


@pytest.mark.parametrize("who", ["anonymous", "customer1"])
def test_writes_without_staff_are_refused_the_same_way(sides: Sides, who: str) -> None:
    from tests.extracted.catalog.test_writes import header

    mono_headers = {} if who == "anonymous" else {"Authorization": f"Token {sides.monolith_tokens[who]}"}
    service_headers = {} if who == "anonymous" else header(staff=False)
    for method, path in (("POST", "/api/products/"), ("PATCH", "/api/products/3/"), ("DELETE", "/api/products/3/")):
        monolith = sides.monolith.request(method, path, json={"price": "1.00"}, headers=mono_headers)
        service = sides.service.request(method, path, json={"price": "1.00"}, headers=service_headers)
        assert (service.status_code, service.json()) == (monolith.status_code, monolith.json()), (who, method)


# --- writes that succeed (#17): the same request on both sides, the same status and body ----
# These run last in this module: they change the rows the read tests compare. Ids differ by
# design (the service allocates from 1e9, README "Ids that never collide") and so do the
# write timestamps; everything else of a write's answer is contract.
VOLATILE = ("id", "created_at", "updated_at", "changed_at")


def _stable(doc: Any) -> Any:
    """The answer without ids and write times (also in a list's rows)."""
    if isinstance(doc, dict):
        return {k: _stable(v) for k, v in doc.items() if k not in VOLATILE}
    if isinstance(doc, list):
        return [_stable(v) for v in doc]
    return doc


def _same_answer(monolith: httpx.Response, service: Any, what: str) -> None:
    assert service.status_code == monolith.status_code, (what, monolith.text[:300], service.text[:300])
    if monolith.status_code == 204:
        assert service.content == monolith.content == b"", what
        return
    assert service.headers["content-type"] == monolith.headers["content-type"], what
    assert _stable(service.json()) == _stable(monolith.json()), what


def test_successful_product_writes_answer_the_same_way(sides: Sides) -> None:
    """Create, read back, PATCH, PUT and DELETE a new product on each side, then ask for it
    again: every answer's status and body match (a 400-vs-204 DELETE cannot hide here)."""
    from tests.extracted.catalog.test_writes import header

    staff_mono = {"Authorization": f"Token {sides.monolith_tokens['staff1']}"}
    me = sides.monolith.get("/api/whoami/", headers=staff_mono).json()
    staff_serv = header(staff=True, sub=str(me["id"]))  # the router's identity for the same user

    def both(method: str, mono_path: str, serv_path: str, body: object = None) -> tuple[httpx.Response, Any]:
        kwargs = {} if body is None else {"json": body}
        return (sides.monolith.request(method, mono_path, headers=staff_mono, **kwargs),
                sides.service.request(method, serv_path, headers=staff_serv, **kwargs))

    new = {"name": "Contract lamp", "description": "made by the contract test", "category": 2,
           "price": "19.90", "is_active": True}
    created = both("POST", "/api/products/", "/api/products/", new)
    _same_answer(*created, "POST a product")
    mono_id, serv_id = created[0].json()["id"], created[1].json()["id"]
    mono_path, serv_path = f"/api/products/{mono_id}/", f"/api/products/{serv_id}/"
    _same_answer(*both("GET", mono_path, serv_path), "GET the new product")
    _same_answer(*both("PATCH", mono_path, serv_path, {"price": "21.00"}), "PATCH its price")
    _same_answer(*both("GET", mono_path + "price-history/", serv_path + "price-history/"),
                 "its price history")  # one entry each: who and from/to (ids and times aside)
    _same_answer(*both("PUT", mono_path, serv_path, {**new, "name": "Contract lamp II", "category": 3}),
                 "PUT it whole")
    _same_answer(*both("PATCH", mono_path, serv_path, {"is_active": False}), "PATCH is_active")
    _same_answer(*both("DELETE", mono_path, serv_path), "DELETE it")
    _same_answer(*both("GET", mono_path, serv_path), "GET after DELETE")
    _same_answer(*both("DELETE", mono_path, serv_path), "DELETE it again")


def test_deleting_a_product_that_order_lines_reference_is_refused_the_same_way(sides: Sides) -> None:
    from tests.extracted.catalog.test_writes import header

    monolith = sides.monolith.delete("/api/products/1/",
                                     headers={"Authorization": f"Token {sides.monolith_tokens['staff1']}"})
    service = sides.service.delete("/api/products/1/", headers=header(staff=True))
    _same_answer(monolith, service, "DELETE a product order lines reference")
