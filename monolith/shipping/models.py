"""Shipment table: created behind the scenes when a payment is authorised (T5)."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class Shipment(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        SHIPPED = "shipped"
        DELIVERED = "delivered"
        CANCELLED = "cancelled"

    order = models.OneToOneField("orders.Order", on_delete=models.CASCADE, related_name="shipment")
    address = models.ForeignKey("customers.Address", null=True, blank=True,
                                on_delete=models.SET_NULL, related_name="+")
    carrier = models.CharField(max_length=30, default="DHL")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PENDING)
    tracking_number = models.CharField(max_length=40, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    shipped_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
