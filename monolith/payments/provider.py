"""FakePay: the payment provider, called inside the order's database transaction (T16).

A real provider is a network call to someone else's system; the shop makes it from a signal
receiver while `order_place` holds its transaction open (T7), so a slow provider holds row
locks, and a decline rolls back everything — the order, the stock decrement, the
reservation, and the record that the provider was ever asked. This one answers at once and
deterministically, as a test card would: an amount over the card's limit
(`MONOLITH_CARD_LIMIT`, default 10000.00) is DECLINED, anything else is authorised.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from rest_framework import status
from rest_framework.exceptions import APIException


@dataclass(frozen=True)
class Answer:
    approved: bool
    reference: str
    reason: str = ""


class PaymentDeclined(APIException):
    """402 to the client: the provider said no, and nothing of the order remains."""

    status_code = status.HTTP_402_PAYMENT_REQUIRED
    default_detail = "Payment declined."
    default_code = "payment_declined"


def authorize(*, order_id: int, amount: Decimal) -> Answer:
    limit = Decimal(settings.CARD_LIMIT)
    if amount > limit:
        return Answer(False, f"fp_{order_id:010d}", f"the amount {amount} is over the card's limit {limit}")
    return Answer(True, f"fp_{order_id:010d}")
