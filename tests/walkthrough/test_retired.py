"""Step 7's monolith switch: MONOLITH_RETIRED=catalog-writes makes product writes 410 Gone.

The switch is read at start (monolith/settings.py); the walkthrough starts a fresh monolith
with it. Reads still answer (the storefront and orders read the replicated copy, T6/T15).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.test.utils import override_settings
from rest_framework.test import APIClient

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def staff(db) -> tuple[APIClient, str]:  # type: ignore[no-untyped-def]
    """A staff client and a product's URL (in whatever rows the session's database holds)."""
    from django.contrib.auth.models import User

    from monolith.catalog.models import Category, Product

    category = Category.objects.create(name="Chairs")
    product = Product.objects.create(name="Oak chair", category=category, price="10.00")
    user = User.objects.create_user("retired-step-boss", password="pw", is_staff=True)
    client = APIClient()
    client.force_authenticate(user)
    return client, f"/api/products/{product.pk}/"


def test_retired_product_writes_answer_410_and_reads_still_work(staff: tuple[APIClient, str]) -> None:
    staff, url = staff  # type: ignore[assignment]
    with override_settings(RETIRED=frozenset({"catalog-writes"})):
        gone = staff.patch(url, {"price": "11.00"}, format="json")
        assert gone.status_code == 410 and "catalog service" in gone.json()["detail"]
        assert staff.post("/api/products/", {"name": "x", "category": 1, "price": "1"}).status_code == 410
        assert APIClient().delete(url).status_code == 410  # before auth: no 403 to puzzle over
        assert staff.get(url).json()["price"] == "10.00"
        assert staff.post("/api/categories/", {"name": "Lamps"}, format="json").status_code == 201
    assert staff.patch(url, {"price": "11.00"}, format="json").status_code == 200


def test_an_unknown_retirement_refuses_to_start() -> None:
    env = {**os.environ, "MONOLITH_RETIRED": "catalog-writes,orders", "DJANGO_SETTINGS_MODULE": "monolith.settings"}
    proc = subprocess.run([sys.executable, "-c", "import django; django.setup()"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode != 0
    assert "MONOLITH_RETIRED='catalog-writes,orders': unknown ['orders']; use a comma list of catalog-writes" \
        in proc.stderr
