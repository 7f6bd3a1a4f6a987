"""Seeded order history: orders, lines, payments, refunds and shipments, in chunks.

Historic orders are written directly (no signals, no stock movements): they describe the
past, which already happened. Kept apart from seeding.py because it is the bulk of rows.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Protocol

from monolith.orders.models import Order, OrderLine
from monolith.payments.models import PaymentAttempt, Refund
from monolith.shipping.models import Shipment
from monolith.shop.seed_sizes import CHUNK, Size, when


class Seeded(Protocol):
    """What the order history is drawn from: the seed's size and generator, and what the
    earlier steps wrote (catalog prices and names, customers' addresses)."""

    size: Size
    rng: random.Random
    prices: list[Decimal]  # index = product id
    names: list[str]
    address_of: dict[int, int]
    progress: Callable[[str], None]

ORDER_CHUNK = 2_000
STATUSES = [  # (status, cumulative probability)
    (Order.Status.DELIVERED, 0.70),
    (Order.Status.SHIPPED, 0.82),
    (Order.Status.PAID, 0.92),
    (Order.Status.CANCELLED, 1.00),
]


def pick_status(x: float) -> str:
    return next(status for status, edge in STATUSES if x < edge)


def seed_orders(seeder: Seeded) -> None:
    s, rng = seeder.size, seeder.rng
    line_id = shipment_id = refund_id = 0
    for first in range(1, s.orders + 1, ORDER_CHUNK):
        orders, lines, payments, refunds, shipments = [], [], [], [], []
        for oid in range(first, min(first + ORDER_CHUNK, s.orders + 1)):
            uid = s.staff + rng.randrange(1, s.customers + 1)
            created = when(rng)
            status = pick_status(rng.random())
            total = Decimal("0.00")
            for pid in sorted(rng.sample(range(1, s.products + 1), rng.randrange(1, s.max_lines + 1))):
                line_id += 1
                qty = rng.randrange(1, 4)
                price = seeder.prices[pid]
                total += price * qty
                lines.append(OrderLine(id=line_id, order_id=oid, product_id=pid,
                                       product_name=seeder.names[pid], quantity=qty,
                                       unit_price=price))
            address = seeder.address_of.get(uid)
            orders.append(Order(id=oid, user_id=uid, status=status, total=total,
                                shipping_address_id=address, created_at=created))
            pay_status = (PaymentAttempt.Status.REFUNDED if status == Order.Status.CANCELLED
                          else PaymentAttempt.Status.CAPTURED)
            payments.append(PaymentAttempt(id=oid, order_id=oid, amount=total, status=pay_status,
                                           provider_ref=f"fp_{oid:010d}", created_at=created))
            if status == Order.Status.CANCELLED:
                refund_id += 1
                refunds.append(Refund(id=refund_id, payment_id=oid, amount=total,
                                      reason="order cancelled", created_at=created + timedelta(hours=2)))
            else:
                shipment_id += 1
                shipped = status in (Order.Status.SHIPPED, Order.Status.DELIVERED)
                shipments.append(Shipment(
                    id=shipment_id, order_id=oid, address_id=address,
                    status={Order.Status.PAID: Shipment.Status.PENDING,
                            Order.Status.SHIPPED: Shipment.Status.SHIPPED,
                            Order.Status.DELIVERED: Shipment.Status.DELIVERED}[status],
                    tracking_number=f"DHL{oid:012d}", created_at=created,
                    shipped_at=created + timedelta(days=1) if shipped else None))
        Order.objects.bulk_create(orders, batch_size=CHUNK)
        OrderLine.objects.bulk_create(lines, batch_size=CHUNK)
        PaymentAttempt.objects.bulk_create(payments, batch_size=CHUNK)
        Refund.objects.bulk_create(refunds, batch_size=CHUNK)
        Shipment.objects.bulk_create(shipments, batch_size=CHUNK)
    seeder.progress(f"orders: {s.orders} orders, {line_id} lines, {shipment_id} shipments")
