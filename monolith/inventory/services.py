"""Inventory writes: restocking, reserving for orders, releasing reservations."""

from __future__ import annotations

from django.db import transaction
from django.db.models import F

from monolith.catalog.models import Product
from monolith.inventory.models import Reservation, StockLevel, Warehouse
from monolith.utils import sync_product_stock


def stock_restock(*, product: Product, warehouse: Warehouse, quantity: int) -> StockLevel:
    with transaction.atomic():
        level, _ = StockLevel.objects.get_or_create(warehouse=warehouse, product=product)
        StockLevel.objects.filter(pk=level.pk).update(quantity=F("quantity") + quantity)
        # inventory writes the catalog's denormalised column (T4, writer 1 of 2)
        sync_product_stock([product.pk])
    level.refresh_from_db()
    return level


def stock_reserve_for_order(*, order) -> list[Reservation]:  # type: ignore[no-untyped-def]
    """Promise stock to each line from the warehouse with the most available."""
    made = []
    for line in order.lines.all():
        level = (
            StockLevel.objects.filter(product_id=line.product_id)
            .annotate(free=F("quantity") - F("reserved")).order_by("-free", "id").first()
        )
        if level is None:
            continue  # sold from a product nobody stocked: the books go negative, like in 2019
        StockLevel.objects.filter(pk=level.pk).update(reserved=F("reserved") + line.quantity)
        made.append(Reservation(order=order, product_id=line.product_id,
                                warehouse_id=level.warehouse_id, quantity=line.quantity))
    return Reservation.objects.bulk_create(made)


def stock_release_for_order(*, order) -> None:  # type: ignore[no-untyped-def]
    held = list(Reservation.objects.filter(order=order, released=False))
    for r in held:
        StockLevel.objects.filter(product_id=r.product_id, warehouse_id=r.warehouse_id).update(
            reserved=F("reserved") - r.quantity)
    Reservation.objects.filter(pk__in=[r.pk for r in held]).update(released=True)
    sync_product_stock(sorted({r.product_id for r in held}))
