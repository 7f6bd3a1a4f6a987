"""JSON shapes of the catalog API (``/api/products/``, ``/api/categories/``)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from rest_framework import serializers

from monolith.catalog.models import Category, PriceHistory, Product
from monolith.utils import money


class CategorySerializer(serializers.ModelSerializer):
    class Meta:
        model = Category
        fields = ["id", "name", "parent", "description"]


class ProductSerializer(serializers.ModelSerializer):
    category_name = serializers.CharField(source="category.name", read_only=True)
    price = serializers.DecimalField(max_digits=10, decimal_places=2, min_value=Decimal("0.01"))

    class Meta:
        model = Product
        fields = [
            "id", "name", "description", "category", "category_name", "price",
            "stock_count", "is_active", "created_at", "updated_at",
        ]
        # stock is owned by inventory; the catalog API only shows it
        read_only_fields = ["stock_count", "created_at", "updated_at"]

    def update(self, instance: Product, validated_data: dict[str, Any]) -> Product:
        new_price = validated_data.get("price")
        if new_price is not None and money(new_price) != instance.price:
            user = self.context["request"].user
            PriceHistory.objects.create(
                product=instance, old_price=instance.price, new_price=money(new_price),
                changed_by=user if user.is_authenticated else None,
            )
        return super().update(instance, validated_data)


class PriceHistorySerializer(serializers.ModelSerializer):
    class Meta:
        model = PriceHistory
        fields = ["id", "old_price", "new_price", "changed_by", "changed_at"]
