"""Placing and cancelling orders: the cart, the hidden side effects, and the 400 paths."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from rest_framework.test import APIClient

from monolith.catalog.models import Product
from monolith.customers.models import Address, Profile
from monolith.inventory.models import Reservation, StockLevel
from monolith.notifications.models import OutboxEmail
from monolith.orders.models import Order
from monolith.payments.models import PaymentAttempt, Refund
from monolith.shipping.models import Shipment

pytestmark = pytest.mark.django_db


def in_stock_product(min_stock: int = 10) -> Product:
    return Product.objects.filter(stock_count__gte=min_stock, is_active=True).order_by("id").first()


def test_place_order_touches_every_context(customer: APIClient) -> None:
    product = in_stock_product()
    before = product.stock_count
    reserved_before = sum(StockLevel.objects.filter(product=product).values_list("reserved", flat=True))
    added = customer.post("/api/cart/items/", {"product": product.id, "quantity": 2}, format="json")
    assert added.status_code == 201
    assert added.json()["items"][0]["product"]["id"] == product.id
    assert Decimal(added.json()["total"]) == product.price * 2

    placed = customer.post("/api/orders/", {}, format="json")
    assert placed.status_code == 201, placed.content
    body = placed.json()
    order = Order.objects.get(pk=body["id"])
    # what the client sees: a paid order with nested product, payment and shipment
    assert body["status"] == "paid"
    assert Decimal(body["total"]) == product.price * 2
    assert body["lines"][0]["product"]["name"] == product.name
    assert body["payments"][0]["status"] == "authorized"
    assert body["shipment"]["status"] == "pending"
    assert body["shipping_address"]["id"] == Address.objects.filter(user=order.user, is_default=True).get().id
    # what happened behind its back, in other contexts' tables
    product.refresh_from_db()
    assert product.stock_count == before - 2
    assert Reservation.objects.get(order=order).quantity == 2
    reserved_after = sum(StockLevel.objects.filter(product=product).values_list("reserved", flat=True))
    assert reserved_after == reserved_before + 2
    assert PaymentAttempt.objects.get(order=order).amount == order.total
    assert Shipment.objects.filter(order=order).exists()
    kinds = set(OutboxEmail.objects.filter(user=order.user).values_list("kind", flat=True))
    assert {"order_confirmation", "shipment_created"} <= kinds
    assert Profile.objects.get(user=order.user).loyalty_points >= int(order.total) // 10
    # and the cart is empty again
    assert customer.get("/api/cart/").json()["items"] == []


def test_order_history_lists_only_mine(customer: APIClient) -> None:
    body = customer.get("/api/orders/").json()
    assert body["count"] == Order.objects.filter(user__username="customer1").count()
    assert all(o["lines"] for o in body["results"])
    html = customer.get("/orders/")
    assert html.status_code == 200 and b"My orders" in html.content


def test_order_history_needs_login(anon: APIClient) -> None:
    assert anon.get("/api/orders/").status_code == 401
    assert anon.get("/orders/").status_code == 302  # to the login page


def test_empty_cart_is_400(customer: APIClient) -> None:
    response = customer.post("/api/orders/", {}, format="json")
    assert response.status_code == 400
    assert response.json() == {"detail": "Your cart is empty."}


def test_not_enough_stock_is_400_and_changes_nothing(customer: APIClient) -> None:
    product = in_stock_product()
    product.stock_count = 1
    product.save()
    customer.post("/api/cart/items/", {"product": product.id, "quantity": 3}, format="json")
    orders_before = Order.objects.count()
    response = customer.post("/api/orders/", {}, format="json")
    assert response.status_code == 400
    assert "Not enough stock" in response.json()["items"][0]
    assert Order.objects.count() == orders_before
    product.refresh_from_db()
    assert product.stock_count == 1
    assert len(customer.get("/api/cart/").json()["items"]) == 1  # the cart survives


def test_someone_elses_address_is_400(customer: APIClient) -> None:
    customer.post("/api/cart/items/", {"product": in_stock_product().id}, format="json")
    other = Address.objects.exclude(user__username="customer1").first()
    response = customer.post("/api/orders/", {"address": other.id}, format="json")
    assert response.status_code == 400
    assert "address" in response.json()


@pytest.mark.parametrize("payload,field", [
    ({"product": 999999}, "product"),
    ({"product": "x"}, "product"),
    ({}, "product"),
    ({"product": 1, "quantity": 0}, "quantity"),
    ({"product": 1, "quantity": 1000}, "quantity"),
    ({"product": 1, "quantity": "many"}, "quantity"),
])
def test_bad_cart_payloads_are_400(customer: APIClient, payload: dict, field: str) -> None:
    response = customer.post("/api/cart/items/", payload, format="json")
    assert response.status_code == 400
    assert field in response.json()


def test_cancel_refunds_releases_and_restores(customer: APIClient) -> None:
    product = in_stock_product()
    before = product.stock_count
    customer.post("/api/cart/items/", {"product": product.id, "quantity": 1}, format="json")
    order_id = customer.post("/api/orders/", {}, format="json").json()["id"]
    cancelled = customer.post(f"/api/orders/{order_id}/cancel/")
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["shipment"]["status"] == "cancelled"
    assert Refund.objects.filter(payment__order_id=order_id).count() == 1
    assert Reservation.objects.get(order_id=order_id).released
    product.refresh_from_db()
    assert product.stock_count == before  # inventory recomputed the catalog's column
    again = customer.post(f"/api/orders/{order_id}/cancel/")
    assert again.status_code == 400 and "cannot be cancelled" in again.json()["detail"]


def test_other_peoples_orders_are_404(customer: APIClient) -> None:
    theirs = Order.objects.exclude(user__username="customer1").first()
    assert customer.get(f"/api/orders/{theirs.id}/").status_code == 404


def test_restock_writes_the_catalog_column(staff: APIClient, customer: APIClient) -> None:
    product = in_stock_product()
    level = StockLevel.objects.filter(product=product).first()
    expected = product.stock_count + 5
    response = staff.post("/api/stock/restock/", {"product": product.id,
                                                  "warehouse": level.warehouse_id, "quantity": 5},
                          format="json")
    assert response.status_code == 201
    product.refresh_from_db()
    assert product.stock_count == expected
    assert customer.post("/api/stock/restock/", {}, format="json").status_code == 403
    assert staff.post("/api/stock/restock/", {"product": product.id, "warehouse": 1,
                                              "quantity": -5}, format="json").status_code == 400


def test_sales_report_joins_four_contexts(staff: APIClient, customer: APIClient) -> None:
    body = staff.get("/api/reports/sales/?limit=5").json()
    assert 0 < len(body["results"]) <= 5
    row = body["results"][0]
    assert set(row) == {"category_id", "category", "orders", "units", "revenue", "shipments"}
    revenues = [Decimal(r["revenue"]) for r in body["results"]]
    assert revenues == sorted(revenues, reverse=True)
    assert customer.get("/api/reports/sales/").status_code == 403
    assert staff.get("/api/reports/sales/?limit=zero").status_code == 400


def test_profile_reaches_into_orders(customer: APIClient) -> None:
    body = customer.get("/api/profile/").json()
    assert body["username"] == "customer1"
    assert Decimal(body["lifetime_value"]) >= 0
    assert customer.patch("/api/profile/", {"phone": "x" * 100}, format="json").status_code == 400


def test_addresses_are_mine_and_validated(customer: APIClient) -> None:
    mine = customer.get("/api/addresses/").json()
    assert mine["count"] == Address.objects.filter(user__username="customer1").count()
    bad = customer.post("/api/addresses/", {"line1": "Somewhere 1"}, format="json")
    assert bad.status_code == 400 and {"city", "postcode"} <= set(bad.json())
    good = customer.post("/api/addresses/", {"line1": "Somewhere 1", "city": "Berlin",
                                             "postcode": "10115"}, format="json")
    assert good.status_code == 201


def test_payments_shipments_outbox_permissions(customer: APIClient, staff: APIClient,
                                               anon: APIClient) -> None:
    assert customer.get("/api/payments/").status_code == 200
    assert customer.get("/api/shipments/").status_code == 200
    assert customer.get("/api/outbox/").status_code == 403
    assert staff.get("/api/outbox/").status_code == 200
    assert anon.get("/api/payments/").status_code == 401
    assert anon.get("/api/warehouses/").json()["count"] == 2


def test_a_declined_payment_is_402_and_rolls_the_whole_order_back(customer: APIClient,
                                                                 settings: Any) -> None:
    """T16: the provider says no inside the order's transaction; nothing of the order remains
    (not even the declined attempt), and the cart is kept for another try."""
    product = in_stock_product()
    customer.post("/api/cart/items/", {"product": product.id, "quantity": 2}, format="json")
    settings.CARD_LIMIT = str(product.price * 2 - Decimal("0.01"))
    before = (product.stock_count, Order.objects.count(), PaymentAttempt.objects.count(),
              Reservation.objects.count(), Shipment.objects.count(), OutboxEmail.objects.count())
    declined = customer.post("/api/orders/", {}, format="json")
    assert declined.status_code == 402, declined.content
    assert declined.json()["detail"].startswith("Payment declined: the amount")
    product.refresh_from_db()
    assert (product.stock_count, Order.objects.count(), PaymentAttempt.objects.count(),
            Reservation.objects.count(), Shipment.objects.count(), OutboxEmail.objects.count()) == before
    assert [i["quantity"] for i in customer.get("/api/cart/").json()["items"]] == [2]
    settings.CARD_LIMIT = str(product.price * 2)  # at the limit: authorised
    placed = customer.post("/api/orders/", {}, format="json")
    assert placed.status_code == 201 and placed.json()["payments"][0]["status"] == "authorized"
