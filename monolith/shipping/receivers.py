"""Shipping reacts to payments and orders: a paid order gets a shipment (T5, second hop)."""

from django.dispatch import receiver

from monolith.orders.signals import order_cancelled
from monolith.payments.signals import payment_authorized
from monolith.shipping.models import Shipment


@receiver(payment_authorized, dispatch_uid="shipping.create")
def create_shipment(sender, payment, **kwargs):  # type: ignore[no-untyped-def]
    order = payment.order
    Shipment.objects.get_or_create(
        order=order,
        defaults={"address_id": order.shipping_address_id,
                  "tracking_number": f"DHL{order.pk:012d}"},
    )


@receiver(order_cancelled, dispatch_uid="shipping.cancel")
def cancel_shipment(sender, order, **kwargs):  # type: ignore[no-untyped-def]
    Shipment.objects.filter(order=order, status=Shipment.Status.PENDING).update(
        status=Shipment.Status.CANCELLED)
