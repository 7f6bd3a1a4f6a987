"""Catalog tables: categories, products and their price history.

``Product.stock_count`` is a denormalised copy of the inventory's stock, written by two
other contexts (inventory and orders) — tangle T4 in monolith/TANGLES.md.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class Category(models.Model):
    name = models.CharField(max_length=120)
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="children"
    )
    description = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]
        verbose_name_plural = "categories"

    def __str__(self) -> str:
        return self.name


class Product(models.Model):
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, default="")
    category = models.ForeignKey(Category, on_delete=models.PROTECT, related_name="products")
    price = models.DecimalField(max_digits=10, decimal_places=2, db_index=True)
    # Denormalised from inventory_stocklevel so the listing needs no join; kept in step by
    # inventory (restock, reservations) AND by orders (place order) — two writers.
    # db_default: a product the catalog service creates arrives through the reverse stream
    # (streams.yaml, catalog_reverse) without a stock count; it starts at 0 here.
    stock_count = models.IntegerField(default=0, db_default=0)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.updated_at = timezone.now()
        super().save(*args, **kwargs)

    def warehouse_stock(self) -> list[tuple[str, int]]:
        """Available units per warehouse, for the product page: catalog asks inventory (T10)."""
        # Local import: inventory.models imports this module at load time, so a top-level
        # import here would be circular. Papered over, not solved (T8).
        from monolith.inventory.models import StockLevel

        levels = StockLevel.objects.filter(product=self).select_related("warehouse")
        return [(level.warehouse.code, level.available) for level in levels]


class PriceHistory(models.Model):
    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="price_history")
    old_price = models.DecimalField(max_digits=10, decimal_places=2)
    new_price = models.DecimalField(max_digits=10, decimal_places=2)
    # String reference into the shared auth tables (tangle T9).
    changed_by = models.ForeignKey(
        "auth.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    changed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-changed_at", "-id"]
        verbose_name_plural = "price history"
