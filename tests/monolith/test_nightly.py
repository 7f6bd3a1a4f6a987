"""T20: the nightly job writes three contexts' tables outside any request."""

from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.utils import timezone

from monolith.catalog.models import Product
from monolith.notifications.models import OutboxEmail
from monolith.orders.models import Cart, CartItem

pytestmark = pytest.mark.django_db


def test_the_nightly_job_sends_mail_resyncs_the_catalog_column_and_drops_stale_carts() -> None:
    product = Product.objects.filter(is_active=True).order_by("id").first()
    assert product is not None
    right = product.stock_count
    Product.objects.filter(pk=product.pk).update(stock_count=right + 50)  # drifted
    user = User.objects.create_user("sleeper")  # its welcome e-mail is queued (T19)
    stale = Cart.objects.create(user=user, updated_at=timezone.now() - timedelta(days=31))
    CartItem.objects.create(cart=stale, product=product, quantity=1)
    OutboxEmail.objects.create(to="a@example.com", kind="test", subject="s", body="b")
    out = StringIO()
    call_command("nightly", "--json", stdout=out)
    done = json.loads(out.getvalue())
    product.refresh_from_db()
    assert product.stock_count == right  # inventory's truth, written into the catalog's table
    assert not OutboxEmail.objects.filter(status=OutboxEmail.Status.QUEUED).exists()
    assert not CartItem.objects.filter(cart=stale).exists()
    assert done["emails_sent"] >= 1 and done["cart_items_dropped"] == 1
    assert done["products_resynced"] == Product.objects.count()
