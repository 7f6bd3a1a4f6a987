"""Inventory's hidden half of placing and cancelling an order (T5)."""

from django.dispatch import receiver

from monolith.inventory.services import stock_release_for_order, stock_reserve_for_order
from monolith.orders.signals import order_cancelled, order_placed


@receiver(order_placed, dispatch_uid="inventory.reserve")
def reserve_stock(sender, order, **kwargs):  # type: ignore[no-untyped-def]
    stock_reserve_for_order(order=order)


@receiver(order_cancelled, dispatch_uid="inventory.release")
def release_stock(sender, order, **kwargs):  # type: ignore[no-untyped-def]
    stock_release_for_order(order=order)
