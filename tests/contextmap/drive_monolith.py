"""Traffic through the shop with the table recorder installed; writes the observe file.

``python -m tests.contextmap.drive_monolith FILE`` (in its own process: it configures Django):
a throwaway test database, the small seed, then a customer browses, fills a cart, places an
order and cancels another; staff restocks; someone reads the sales report.
"""

from __future__ import annotations

import os
import sys


def main(observe: str) -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.contextmap.fixtures.monolith_observed"
    os.environ["STRANGLER_MAP_OBSERVE"] = observe
    import django

    django.setup()
    from django.contrib.auth.models import User
    from django.test.utils import setup_databases, setup_test_environment
    from rest_framework.test import APIClient

    from monolith.catalog.models import Product
    from monolith.shop.seeding import seed

    setup_test_environment()
    setup_databases(verbosity=0, interactive=False)
    seed("small")
    product = Product.objects.filter(stock_count__gt=5, is_active=True).order_by("id").first()
    assert product is not None
    customer, staff, anon = APIClient(), APIClient(), APIClient()
    customer.force_login(User.objects.get(username="customer1"))
    staff.force_login(User.objects.get(username="staff1"))

    def ok(response, *codes):  # type: ignore[no-untyped-def]
        assert response.status_code in (codes or (200, 201)), (response.status_code, response.content[:300])
        return response

    ok(anon.get("/"))
    ok(anon.get("/api/products/"))
    ok(anon.get(f"/api/products/{product.id}/"))
    ok(anon.get(f"/products/{product.id}/"))
    ok(customer.post("/api/cart/items/", {"product": product.id, "quantity": 1}, format="json"))
    ok(customer.post("/api/orders/", {}, format="json"))
    ok(customer.post("/api/cart/items/", {"product": product.id, "quantity": 1}, format="json"))
    second = ok(customer.post("/api/orders/", {}, format="json")).json()["id"]
    ok(customer.post(f"/api/orders/{second}/cancel/"))
    ok(staff.post("/api/stock/restock/", {"product": product.id, "warehouse": 1, "quantity": 5},
                  format="json"))
    ok(staff.get("/api/reports/sales/"))


if __name__ == "__main__":
    main(sys.argv[1])
