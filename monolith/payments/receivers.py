"""Payments' hidden half of placing and cancelling an order (T5).

Authorising also flips the order to "paid": payments writes the orders table.
"""

from django.dispatch import receiver

from monolith.orders.models import Order
from monolith.orders.signals import order_cancelled, order_placed
from monolith.payments.models import PaymentAttempt, Refund
from monolith.payments.signals import payment_authorized
from monolith.utils import money


@receiver(order_placed, dispatch_uid="payments.authorize")
def authorize_payment(sender, order, **kwargs):  # type: ignore[no-untyped-def]
    payment = PaymentAttempt.objects.create(
        order=order, amount=money(order.total), status=PaymentAttempt.Status.AUTHORIZED,
        provider_ref=f"fp_{order.pk:010d}",
    )
    Order.objects.filter(pk=order.pk).update(status=Order.Status.PAID)  # payments writes orders (T13)
    order.status = Order.Status.PAID
    payment_authorized.send(sender=PaymentAttempt, payment=payment)


@receiver(order_cancelled, dispatch_uid="payments.refund")
def refund_payment(sender, order, **kwargs):  # type: ignore[no-untyped-def]
    for payment in order.payments.exclude(status=PaymentAttempt.Status.REFUNDED):
        Refund.objects.create(payment=payment, amount=payment.amount, reason="order cancelled")
        payment.status = PaymentAttempt.Status.REFUNDED
        payment.save(update_fields=["status"])
