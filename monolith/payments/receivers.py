"""Payments' hidden half of placing and cancelling an order (T5).

Authorising calls the provider inside the order's transaction (T16) and also flips the order
to "paid": payments writes the orders table (T13). A decline raises, so the whole order rolls
back and the client gets 402.
"""

from django.dispatch import receiver

from monolith.orders.models import Order
from monolith.orders.signals import order_cancelled, order_placed
from monolith.payments import provider
from monolith.payments.models import PaymentAttempt, Refund
from monolith.payments.signals import payment_authorized
from monolith.utils import money


@receiver(order_placed, dispatch_uid="payments.authorize")
def authorize_payment(sender, order, **kwargs):  # type: ignore[no-untyped-def]
    answer = _ask_provider(order)
    payment = PaymentAttempt.objects.create(
        order=order, amount=money(order.total), status=PaymentAttempt.Status.AUTHORIZED,
        provider_ref=answer.reference,
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


def _ask_provider(order: Order) -> provider.Answer:
    """The provider's answer, asked while the order's transaction is open (T16)."""
    answer = provider.authorize(order_id=order.pk, amount=money(order.total))  # a network call, in the transaction
    if not answer.approved:
        # the decline is recorded, then rolled back with the order: no trace of the attempt remains
        PaymentAttempt.objects.create(order=order, amount=money(order.total), status=PaymentAttempt.Status.DECLINED,
                                      provider_ref=answer.reference)
        raise provider.PaymentDeclined(f"Payment declined: {answer.reason}.")
    return answer
