"""Payments API: ``/api/payments/`` (mine; staff see all)."""

from rest_framework import permissions, viewsets

from monolith.payments.models import PaymentAttempt
from monolith.payments.serializers import PaymentSerializer


class PaymentViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = PaymentSerializer
    permission_classes = [permissions.IsAuthenticated]
    filterset_fields = ["status", "order"]
    ordering_fields = ["id", "created_at", "amount"]
    ordering = ["-id"]

    def get_queryset(self):  # type: ignore[no-untyped-def]
        if getattr(self, "swagger_fake_view", False):  # the OpenAPI schema is built without a user
            return PaymentAttempt.objects.none()
        qs = PaymentAttempt.objects.all()
        user = self.request.user
        return qs if user.is_staff else qs.filter(order__user=user)
