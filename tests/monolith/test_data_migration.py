"""T18: the customers app's data migration fills loyalty points from the orders table."""

from __future__ import annotations

import importlib

import pytest
from django.apps import apps

from monolith.customers.models import Profile
from monolith.orders.models import Order

pytestmark = pytest.mark.django_db

backfill = importlib.import_module("monolith.customers.migrations.0002_backfill_loyalty_points")


def test_the_backfill_recomputes_points_from_every_order_and_never_lowers_them() -> None:
    customer = Order.objects.values_list("user_id", flat=True).order_by("user_id").first()
    assert customer is not None, "the seed has orders"
    expected = sum(int(t) // 10 for t in Order.objects.filter(user_id=customer).values_list("total", flat=True))
    assert expected > 0
    Profile.objects.filter(user_id=customer).update(loyalty_points=0)
    backfill.backfill_loyalty_points(apps, None)
    assert Profile.objects.get(user_id=customer).loyalty_points == expected
    Profile.objects.filter(user_id=customer).update(loyalty_points=expected + 5)  # earned since: kept
    backfill.backfill_loyalty_points(apps, None)
    assert Profile.objects.get(user_id=customer).loyalty_points == expected + 5
