"""Every e-mail the shop sends starts here, triggered by other contexts' events (T5)."""

from django.db.models.signals import post_save
from django.dispatch import receiver

from monolith.orders.signals import order_cancelled, order_placed
from monolith.shipping.models import Shipment
from monolith.utils import queue_email


@receiver(order_placed, dispatch_uid="notifications.confirm")
def confirm_order(sender, order, **kwargs):  # type: ignore[no-untyped-def]
    queue_email(user=order.user, kind="order_confirmation",
                subject=f"Your order {order.pk} is confirmed",
                body=f"Thank you! Total: {order.total} EUR.")


@receiver(order_cancelled, dispatch_uid="notifications.cancelled")
def cancelled_order(sender, order, **kwargs):  # type: ignore[no-untyped-def]
    queue_email(user=order.user, kind="order_cancelled",
                subject=f"Your order {order.pk} was cancelled",
                body="Your payment will be refunded.")


@receiver(post_save, sender=Shipment, dispatch_uid="notifications.shipment")
def shipment_created(sender, instance, created, **kwargs):  # type: ignore[no-untyped-def]
    if created:
        queue_email(user=instance.order.user, kind="shipment_created",
                    subject=f"Order {instance.order_id} is being packed",
                    body=f"Tracking number: {instance.tracking_number}")
