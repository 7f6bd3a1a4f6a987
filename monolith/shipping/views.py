"""Shipping API: ``/api/shipments/`` (mine; staff see all)."""

from rest_framework import permissions, viewsets

from monolith.shipping.models import Shipment
from monolith.shipping.serializers import ShipmentSerializer
from monolith.utils import ShopPagination


class ShipmentViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = ShipmentSerializer
    pagination_class = ShopPagination  # copied from a view that needed it, years ago
    permission_classes = [permissions.IsAuthenticated]
    filterset_fields = ["status", "carrier"]
    ordering_fields = ["id", "created_at"]
    ordering = ["-id"]

    def get_queryset(self):  # type: ignore[no-untyped-def]
        if getattr(self, "swagger_fake_view", False):  # the OpenAPI schema is built without a user
            return Shipment.objects.none()
        qs = Shipment.objects.all()
        user = self.request.user
        return qs if user.is_staff else qs.filter(order__user=user)
