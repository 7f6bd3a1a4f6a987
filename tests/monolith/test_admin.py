"""T17: the Django admin is a back office that writes the catalog's table around its rules."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth.models import User
from django.test import Client

from monolith.catalog.models import PriceHistory, Product

pytestmark = pytest.mark.django_db


def test_a_price_edited_in_the_admin_writes_the_table_and_no_history() -> None:
    boss = User.objects.create_superuser("backoffice", "bo@example.com", "x")
    client = Client()
    client.force_login(boss)
    product = Product.objects.order_by("id").first()
    assert product is not None
    page = client.get(f"/admin/catalog/product/{product.pk}/change/")
    assert page.status_code == 200 and product.name in page.content.decode()
    history = PriceHistory.objects.filter(product=product).count()
    new_price = product.price + Decimal("1.00")
    saved = client.post(f"/admin/catalog/product/{product.pk}/change/", {
        "name": product.name, "description": product.description, "price": str(new_price),
        "is_active": "on", "category": product.category_id})
    assert saved.status_code == 302, saved.content.decode()[:2000]
    product.refresh_from_db()
    assert product.price == new_price
    assert PriceHistory.objects.filter(product=product).count() == history  # the API would have added one


def test_the_admin_is_closed_to_customers() -> None:
    User.objects.create_user("shopper", password="x")
    client = Client()
    client.login(username="shopper", password="x")
    assert client.get("/admin/catalog/product/").status_code == 302  # to the admin's login
