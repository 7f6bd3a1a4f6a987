"""The catalog API: listing, filters, ordering, detail, staff-only writes, DRF error bodies."""

from __future__ import annotations

from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from monolith.catalog.models import PriceHistory, Product

pytestmark = pytest.mark.django_db


def test_product_list_is_paginated(anon: APIClient) -> None:
    body = anon.get("/api/products/").json()
    assert set(body) == {"count", "next", "previous", "results"}
    assert body["count"] == 200 and body["previous"] is None
    assert len(body["results"]) == 20
    assert [p["id"] for p in body["results"]] == list(range(1, 21))
    page2 = anon.get(body["next"]).json()
    assert [p["id"] for p in page2["results"]] == list(range(21, 41))
    assert page2["previous"] is not None


def test_page_size_is_capped(anon: APIClient) -> None:
    assert len(anon.get("/api/products/?page_size=500").json()["results"]) == 100


def test_product_fields(anon: APIClient) -> None:
    product = anon.get("/api/products/7/").json()
    db = Product.objects.select_related("category").get(pk=7)
    assert product["name"] == db.name and Decimal(product["price"]) == db.price
    assert product["category"] == db.category_id
    assert product["category_name"] == db.category.name
    assert isinstance(product["stock_count"], int)


def test_filters_and_ordering(anon: APIClient) -> None:
    body = anon.get("/api/products/?category=3&min_price=50&max_price=300&ordering=-price&page_size=100").json()
    expected = Product.objects.filter(category_id=3, price__gte=50, price__lte=300).count()
    assert body["count"] == expected > 0
    prices = [Decimal(p["price"]) for p in body["results"]]
    assert prices == sorted(prices, reverse=True)
    assert all(Decimal(50) <= p <= Decimal(300) for p in prices)
    assert {p["category"] for p in body["results"]} == {3}


def test_search(anon: APIClient) -> None:
    body = anon.get("/api/products/?search=oak&page_size=100").json()
    assert body["count"] == Product.objects.filter(name__icontains="oak").count() > 0
    assert all("oak" in p["name"].lower() for p in body["results"])


def test_categories(anon: APIClient) -> None:
    body = anon.get("/api/categories/").json()
    assert body["count"] == 12
    assert body["results"][0] == {"id": 1, "name": "Home", "parent": None,
                                  "description": "All things home"}


@pytest.mark.parametrize("query,field", [
    ("min_price=abc", "min_price"),
    ("category=99999", "category"),
    ("in_stock=perhaps", "in_stock"),
])
def test_bad_filters_are_400_with_the_field(anon: APIClient, query: str, field: str) -> None:
    response = anon.get(f"/api/products/?{query}")
    assert response.status_code == 400
    assert field in response.json()


def test_unknown_product_is_404_json(anon: APIClient) -> None:
    response = anon.get("/api/products/999999/")
    assert response.status_code == 404
    assert response.json() == {"detail": "No Product matches the given query."}


def test_writes_need_staff(anon: APIClient, customer: APIClient) -> None:
    payload = {"name": "Thing", "category": 1, "price": "9.99"}
    assert anon.post("/api/products/", payload, format="json").status_code == 401
    assert customer.post("/api/products/", payload, format="json").status_code == 403
    assert customer.patch("/api/products/1/", {"price": "1.00"}, format="json").status_code == 403
    assert Product.objects.filter(name="Thing").count() == 0


def test_staff_creates_and_reprices(staff: APIClient) -> None:
    created = staff.post("/api/products/", {"name": "Thing", "category": 1, "price": "9.99"},
                         format="json")
    assert created.status_code == 201, created.content
    pid = created.json()["id"]
    assert pid > 200  # sequences continue after the seeded ids
    assert staff.patch(f"/api/products/{pid}/", {"price": "12.50"}, format="json").status_code == 200
    history = PriceHistory.objects.get(product_id=pid)
    assert (history.old_price, history.new_price) == (Decimal("9.99"), Decimal("12.50"))
    assert history.changed_by is not None and history.changed_by.username == "staff1"
    listed = staff.get(f"/api/products/{pid}/price-history/").json()
    assert listed["count"] == 1


@pytest.mark.parametrize("payload,field", [
    ({"name": "X", "category": 1, "price": "-1"}, "price"),
    ({"name": "X", "category": 1, "price": "abc"}, "price"),
    ({"name": "X", "category": 1, "price": "123456789012"}, "price"),
    ({"category": 1, "price": "1.00"}, "name"),
    ({"name": "X", "category": 424242, "price": "1.00"}, "category"),
    ({"name": "X" * 500, "category": 1, "price": "1.00"}, "name"),
    ({"name": "X", "category": "one", "price": "1.00"}, "category"),
])
def test_invalid_product_payloads_are_drf_400s(staff: APIClient, payload: dict, field: str) -> None:
    response = staff.post("/api/products/", payload, format="json")
    assert response.status_code == 400
    assert field in response.json()


def test_malformed_json_is_400(staff: APIClient) -> None:
    response = staff.post("/api/products/", "{not json", content_type="application/json")
    assert response.status_code == 400
    assert "detail" in response.json()


def test_deleting_a_category_in_use_is_400_not_500(staff: APIClient) -> None:
    response = staff.delete("/api/categories/1/")
    assert response.status_code == 400
    assert "detail" in response.json()


def test_links_use_the_forwarded_host_behind_the_router(anon: APIClient) -> None:
    # Behind the router the upstream sees its own loopback Host; `next` must still lead
    # back through the router, or a client paging through would bypass it.
    body = anon.get("/api/products/?page_size=1", HTTP_X_FORWARDED_HOST="shop.example:8080").json()
    assert body["next"] == "http://shop.example:8080/api/products/?page=2&page_size=1"


def test_forwarded_headers_from_anyone_but_the_router_are_ignored(anon: APIClient) -> None:
    # Reaching the monolith directly (not from MONOLITH_TRUSTED_PROXIES, loopback by
    # default) must not let anyone poison the pagination links.
    body = anon.get("/api/products/?page_size=1", REMOTE_ADDR="203.0.113.9", HTTP_HOST="shop.internal",
                    HTTP_X_FORWARDED_HOST="evil.example", HTTP_X_FORWARDED_PROTO="https").json()
    assert body["next"] == "http://shop.internal/api/products/?page=2&page_size=1"


def test_the_router_reports_the_scheme_and_client(anon: APIClient) -> None:
    from django.http import HttpResponse
    from django.test import RequestFactory

    from monolith.shop.proxies import TrustedProxyMiddleware

    body = anon.get("/api/products/?page_size=1", HTTP_X_FORWARDED_HOST="shop.example",
                    HTTP_X_FORWARDED_PROTO="https").json()
    assert body["next"] == "https://shop.example/api/products/?page=2&page_size=1"
    request = RequestFactory().get("/", HTTP_X_FORWARDED_FOR="6.6.6.6, 203.0.113.7, 127.0.0.1")
    TrustedProxyMiddleware(lambda r: HttpResponse())(request)
    assert request.META["REMOTE_ADDR"] == "203.0.113.7"  # the first untrusted hop from the right
