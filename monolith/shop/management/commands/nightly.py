"""``python -m monolith nightly [--json]``: the shop's nightly cron job (T20).

Written years ago to paper over drift, run by cron at 03:00, outside any request: it sends
the notifications outbox, recomputes every product's `stock_count` from inventory (a third
writer of the catalog's table, T4) and empties carts nobody touched for 30 days (orders).
Nothing routes it: once the catalog service owns `catalog_product`, this job still writes the
monolith's copy, and `strangler map --observe` never sees it (it records requests).
"""

from __future__ import annotations

import json
from datetime import timedelta

from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction
from django.utils import timezone

from monolith.catalog.models import Product
from monolith.notifications.models import OutboxEmail
from monolith.orders.models import CartItem
from monolith.utils import sync_product_stock

STALE_CART = timedelta(days=30)


def run_nightly() -> dict[str, int]:
    now = timezone.now()
    with transaction.atomic():  # three contexts' tables in one job (T20)
        sent = OutboxEmail.objects.filter(status=OutboxEmail.Status.QUEUED).update(
            status=OutboxEmail.Status.SENT, sent_at=now)  # the "outbox worker": a fake mailer
        ids = list(Product.objects.values_list("id", flat=True))
        sync_product_stock(ids)  # writes catalog_product from inventory's levels (T20, T4)
        emptied, _ = CartItem.objects.filter(cart__updated_at__lt=now - STALE_CART).delete()
    return {"emails_sent": sent, "products_resynced": len(ids), "cart_items_dropped": emptied}


class Command(BaseCommand):
    help = "The nightly job: send queued e-mails, resync stock counts, drop stale carts."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="print what it did as JSON")

    def handle(self, *args: object, **opts: object) -> None:
        done = run_nightly()
        if opts["json"]:
            self.stdout.write(json.dumps(done))
        else:
            self.stdout.write(", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in done.items()))
