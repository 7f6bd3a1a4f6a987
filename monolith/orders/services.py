"""Order writes: the cart, placing an order, cancelling it.

``order_place`` is the shop's heart and its worst tangle: ONE database transaction that
writes orders, catalog (stock_count), inventory (reservations), payments, shipping,
notifications and customers tables — most of it through signal receivers (T5, T7).
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models import F
from rest_framework.exceptions import ValidationError

from monolith.catalog.models import Product
from monolith.customers.models import Address
from monolith.orders.models import Cart, CartItem, Order, OrderLine
from monolith.orders.signals import order_cancelled, order_placed
from monolith.utils import money

MAX_QUANTITY = 99


def cart_for(user: Any) -> Cart:
    cart, _ = Cart.objects.get_or_create(user=user)
    return cart


def cart_add(*, user: Any, product: Product, quantity: int) -> Cart:
    if not product.is_active:
        raise ValidationError({"product": ["This product is no longer sold."]})
    cart = cart_for(user)
    item, created = CartItem.objects.get_or_create(cart=cart, product=product,
                                                   defaults={"quantity": quantity})
    if not created:
        if item.quantity + quantity > MAX_QUANTITY:
            raise ValidationError({"quantity": [f"At most {MAX_QUANTITY} of one product."]})
        CartItem.objects.filter(pk=item.pk).update(quantity=F("quantity") + quantity)
    return cart


def cart_remove(*, user: Any, product_id: int) -> Cart:
    cart = cart_for(user)
    cart.items.filter(product_id=product_id).delete()
    return cart


def order_place(*, user: Any, address: Address | None = None) -> Order:
    """Turn the user's cart into an order; everything else happens in receivers."""
    with transaction.atomic():  # spans seven contexts' tables (T7)
        cart = cart_for(user)
        items = list(cart.items.order_by("product_id"))
        if not items:
            raise ValidationError({"detail": "Your cart is empty."})
        # lock the rows we are about to decrement (PostgreSQL; SQLite locks the file)
        products = Product.objects.select_for_update().in_bulk([i.product_id for i in items])
        short = [
            f"{products[i.product_id].name} (#{i.product_id}): {products[i.product_id].stock_count} left"
            for i in items
            if products[i.product_id].stock_count < i.quantity or not products[i.product_id].is_active
        ]
        if short:
            raise ValidationError({"items": [f"Not enough stock: {s}" for s in short]})
        if address is None:
            address = Address.objects.filter(user=user).order_by("-is_default", "id").first()
        order = Order.objects.create(user=user, shipping_address=address)
        lines = [
            OrderLine(order=order, product_id=i.product_id, product_name=products[i.product_id].name,
                      quantity=i.quantity, unit_price=products[i.product_id].price)
            for i in items
        ]
        OrderLine.objects.bulk_create(lines)
        for i in items:
            # orders writes the catalog's denormalised column (T4, writer 2 of 2)
            Product.objects.filter(pk=i.product_id).update(stock_count=F("stock_count") - i.quantity)
        order.total = money(sum(line.unit_price * line.quantity for line in lines))
        order.save(update_fields=["total"])
        cart.items.all().delete()
        order_placed.send(sender=Order, order=order)  # reserve, pay, ship, e-mail, loyalty
    return order


def order_cancel(*, order: Order) -> Order:
    if order.status not in (Order.Status.PLACED, Order.Status.PAID):
        raise ValidationError({"detail": f"An order that is {order.status} cannot be cancelled."})
    with transaction.atomic():
        order.status = Order.Status.CANCELLED
        order.save(update_fields=["status"])
        order_cancelled.send(sender=Order, order=order)  # release, refund, stop shipment, e-mail
    return order
