"""Payment tables: one attempt per order (a fake provider), refunds on cancellation."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class PaymentAttempt(models.Model):
    class Status(models.TextChoices):
        AUTHORIZED = "authorized"
        CAPTURED = "captured"
        DECLINED = "declined"
        REFUNDED = "refunded"

    order = models.ForeignKey("orders.Order", on_delete=models.CASCADE, related_name="payments")
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    status = models.CharField(max_length=12, choices=Status.choices)
    provider = models.CharField(max_length=30, default="fakepay")
    provider_ref = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]


class Refund(models.Model):
    payment = models.ForeignKey(PaymentAttempt, on_delete=models.CASCADE, related_name="refunds")
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    reason = models.CharField(max_length=200, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]
