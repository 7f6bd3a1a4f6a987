"""Staff writes through HTTP: authorised by the router's identity header, validated like DRF."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from sqlalchemy import Engine, delete, func, insert, select

from extracted.catalog.models import ID_BLOCK, categories, order_line_refs, price_changes, products
from extracted.kit import identity
from tests.extracted.catalog.asgi import ASGIClient
from tests.extracted.catalog.conftest import SECRET

NOW = "2026-01-01 00:00:00"


def header(*, staff: bool = True, secret: str = SECRET, ttl: int = 60, sub: str = "3") -> dict[str, str]:
    value = identity.sign(
        {"sub": sub, "username": "u", "staff": staff, "exp": int(time.time()) + ttl}, secret
    )
    return {"X-Strangler-Identity": value}


@pytest.fixture
def seeded(client: ASGIClient, catalog_engine: Engine) -> ASGIClient:
    with catalog_engine.begin() as conn:
        conn.execute(insert(categories), [{"id": 1, "name": "Kitchen", "created_at": NOW}])
        conn.execute(
            insert(products),
            [{"id": 5, "name": "Oak Mug", "description": "d", "category_id": 1,
              "price_cents": 1250, "stock_count": 3, "is_active": True,
              "created_at": NOW, "updated_at": NOW}],
        )
    return client


def count(engine: Engine, table) -> int:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


BODY = {"name": "Steel Kettle", "category": 1, "price": "19.99"}


@pytest.mark.parametrize(
    ("make_headers", "status", "detail"),
    [  # headers are made when the test runs: a signed one made at collection could expire
        (dict, 401, "Authentication credentials were not provided."),
        (lambda: header(secret="wrong"), 401, "Invalid identity signature."),
        (lambda: header(ttl=-5), 401, "Identity has expired."),
        (lambda: {"X-Strangler-Identity": "garbage"}, 401, "Malformed identity."),
        (lambda: header(staff=False), 403, "You do not have permission to perform this action."),
    ],
)
def test_writes_without_a_valid_staff_identity_are_refused_and_change_nothing(
    seeded: ASGIClient,
    catalog_engine: Engine,
    make_headers: Callable[[], dict[str, str]],
    status: int,
    detail: str,
) -> None:
    headers = make_headers()
    attempts = [
        seeded.post("/api/products/", json=BODY, headers=headers),
        seeded.patch("/api/products/5/", json={"price": "1.00"}, headers=headers),
        seeded.put("/api/products/5/", json=BODY, headers=headers),
        seeded.delete("/api/products/5/", headers=headers),
    ]
    for response in attempts:
        assert response.status_code == status
        assert response.json() == {"detail": detail}
    assert count(catalog_engine, products) == 1
    assert seeded.get("/api/products/5/").json()["price"] == "12.50"


def test_staff_create_answers_201_with_the_product_and_it_is_readable(seeded: ASGIClient) -> None:
    response = seeded.post("/api/products/", json=BODY, headers=header())
    assert response.status_code == 201
    body = response.json()
    assert {k: body[k] for k in ("name", "category", "category_name", "price", "stock_count", "is_active", "description")} == {
        "name": "Steel Kettle", "category": 1, "category_name": "Kitchen", "price": "19.99",
        "stock_count": 0, "is_active": True, "description": "",
    }
    assert body["created_at"].endswith("Z")
    assert seeded.get(f"/api/products/{body['id']}/").json() == body


def test_a_created_product_never_takes_an_id_the_monolith_will_give(seeded: ASGIClient, catalog_engine: Engine) -> None:
    """The regression of issue 11: the service took max(id)+1 = 6, the monolith's next product
    was also 6, and the CDC upsert replaced the service's row. Ids now come from the catalog's
    own block; the monolith's next row arrives through CDC beside it."""
    created = seeded.post("/api/products/", json=BODY, headers=header()).json()
    assert created["id"] == ID_BLOCK[0]  # the first id of the catalog's block, not 6
    with catalog_engine.begin() as conn:  # what the CDC sink does with the monolith's product 6
        conn.execute(insert(products).values(
            id=6, name="Monolith Lamp", description="", category_id=1, price_cents=500,
            stock_count=0, is_active=True, created_at=NOW, updated_at=NOW))
    assert seeded.get("/api/products/6/").json()["name"] == "Monolith Lamp"
    assert seeded.get(f"/api/products/{created['id']}/").json() == created
    again = seeded.post("/api/products/", json={**BODY, "name": "Tin Kettle"}, headers=header()).json()
    assert again["id"] == ID_BLOCK[0] + 1  # the copied row 6 did not move the allocator
    assert count(catalog_engine, products) == 4


def test_a_deleted_products_id_is_never_handed_out_again(seeded: ASGIClient) -> None:
    first = seeded.post("/api/products/", json=BODY, headers=header()).json()["id"]
    assert seeded.delete(f"/api/products/{first}/", headers=header()).status_code == 204
    second = seeded.post("/api/products/", json=BODY, headers=header()).json()["id"]
    assert second == first + 1  # a cached link or a late CDC event for `first` cannot hit it


def test_a_price_change_is_recorded_with_who_made_it(seeded: ASGIClient, catalog_engine: Engine) -> None:
    response = seeded.patch("/api/products/5/", json={"price": "14.00"}, headers=header(sub="9"))
    assert response.status_code == 200
    assert response.json()["price"] == "14.00"
    assert response.json()["name"] == "Oak Mug"
    with catalog_engine.connect() as conn:
        change = conn.execute(select(price_changes)).mappings().one()
    assert (change["old_price_cents"], change["new_price_cents"], change["changed_by"]) == (1250, 1400, 9)


def test_stock_count_is_read_only_here(seeded: ASGIClient) -> None:
    response = seeded.patch("/api/products/5/", json={"stock_count": 999}, headers=header())
    assert response.status_code == 200
    assert response.json()["stock_count"] == 3


def test_deleting_a_product_an_order_line_references_is_refused_like_the_monolith(
    seeded: ASGIClient, catalog_engine: Engine
) -> None:
    with catalog_engine.begin() as conn:  # the stream's read copy of an order line for product 5
        conn.execute(insert(order_line_refs), [{"id": 31, "product_id": 5}])
    response = seeded.delete("/api/products/5/", headers=header())
    assert response.status_code == 400
    assert response.json() == {"detail": ["This conflicts with existing data."]}  # the monolith's body
    assert seeded.get("/api/products/5/").status_code == 200
    with catalog_engine.begin() as conn:  # the order is deleted in the monolith; CDC deletes the line
        conn.execute(delete(order_line_refs))
    assert seeded.delete("/api/products/5/", headers=header()).status_code == 204


def test_delete_then_gone(seeded: ASGIClient) -> None:
    assert seeded.delete("/api/products/5/", headers=header()).status_code == 204
    gone = seeded.get("/api/products/5/")
    assert gone.status_code == 404
    assert gone.json() == {"detail": "No Product matches the given query."}
    assert seeded.delete("/api/products/5/", headers=header()).status_code == 404


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        ({}, {"name": ["This field is required."], "category": ["This field is required."], "price": ["This field is required."]}),
        ({**BODY, "name": "  "}, {"name": ["This field may not be blank."]}),
        ({**BODY, "name": "x" * 201}, {"name": ["Ensure this field has no more than 200 characters."]}),
        ({**BODY, "category": 99}, {"category": ['Invalid pk "99" - object does not exist.']}),
        ({**BODY, "category": "abc"}, {"category": ["Incorrect type. Expected pk value, received str."]}),
        ({**BODY, "price": "0"}, {"price": ["Ensure this value is greater than or equal to 0.01."]}),
        ({**BODY, "price": "1.234"}, {"price": ["Ensure that there are no more than 2 decimal places."]}),
        ({**BODY, "price": "123456789.00"}, {"price": ["Ensure that there are no more than 10 digits in total."]}),
        ({**BODY, "price": "abc"}, {"price": ["A valid number is required."]}),
        ({**BODY, "price": None}, {"price": ["This field may not be null."]}),
        ({**BODY, "is_active": "maybe"}, {"is_active": ["Must be a valid boolean."]}),
    ],
)
def test_invalid_payloads_get_drf_error_bodies_and_write_nothing(
    seeded: ASGIClient, catalog_engine: Engine, body: dict[str, object], errors: dict[str, list[str]]
) -> None:
    response = seeded.post("/api/products/", json=body, headers=header())
    assert response.status_code == 400
    assert response.json() == errors
    assert count(catalog_engine, products) == 1


def test_a_body_that_is_not_json_is_400(seeded: ASGIClient) -> None:
    response = seeded.post(
        "/api/products/", content=b"{nope", headers={**header(), "content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["detail"].startswith("JSON parse error")


def test_unknown_methods_get_drf_405(seeded: ASGIClient) -> None:
    response = seeded.delete("/api/categories/")
    assert response.status_code == 405
    assert response.json() == {"detail": 'Method "DELETE" not allowed.'}
