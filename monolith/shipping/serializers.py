"""JSON shapes of shipments (nested into orders, too: T12)."""

from rest_framework import serializers

from monolith.shipping.models import Shipment


class ShipmentSerializer(serializers.ModelSerializer):
    class Meta:
        model = Shipment
        fields = ["id", "order", "carrier", "status", "tracking_number", "created_at", "shipped_at"]
