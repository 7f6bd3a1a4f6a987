"""JSON shapes of the inventory API."""

from rest_framework import serializers

from monolith.catalog.models import Product
from monolith.inventory.models import StockLevel, Warehouse


class WarehouseSerializer(serializers.ModelSerializer):
    class Meta:
        model = Warehouse
        fields = ["id", "code", "name", "city"]


class StockLevelSerializer(serializers.ModelSerializer):
    available = serializers.IntegerField(read_only=True)

    class Meta:
        model = StockLevel
        fields = ["id", "warehouse", "product", "quantity", "reserved", "available"]


class RestockSerializer(serializers.Serializer):
    product = serializers.PrimaryKeyRelatedField(queryset=Product.objects.all())
    warehouse = serializers.PrimaryKeyRelatedField(queryset=Warehouse.objects.all())
    quantity = serializers.IntegerField(min_value=1, max_value=100_000)
