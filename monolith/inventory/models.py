"""Inventory tables: where stock physically is, and what is promised to orders."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from monolith.catalog.models import Product  # catalog.models imports us back, locally (T8)


class Warehouse(models.Model):
    code = models.CharField(max_length=10, unique=True)
    name = models.CharField(max_length=100)
    city = models.CharField(max_length=100)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.code


class StockLevel(models.Model):
    warehouse = models.ForeignKey(Warehouse, on_delete=models.CASCADE, related_name="stock")
    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="stock_levels")
    quantity = models.IntegerField(default=0)
    reserved = models.IntegerField(default=0)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["warehouse", "product"], name="one_level_per_place")
        ]

    @property
    def available(self) -> int:
        return self.quantity - self.reserved


class Reservation(models.Model):
    # string references across contexts: no import, but the same hard database link (T1)
    order = models.ForeignKey("orders.Order", on_delete=models.CASCADE,
                              related_name="reservations")
    product = models.ForeignKey("catalog.Product", on_delete=models.PROTECT, related_name="+")
    warehouse = models.ForeignKey(Warehouse, on_delete=models.PROTECT, related_name="+")
    quantity = models.IntegerField()
    released = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]
