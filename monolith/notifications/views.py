"""Notifications API: ``/api/outbox/`` (staff only)."""

from rest_framework import permissions, serializers, viewsets

from monolith.notifications.models import OutboxEmail


class OutboxEmailSerializer(serializers.ModelSerializer):
    class Meta:
        model = OutboxEmail
        fields = ["id", "user", "to", "kind", "subject", "status", "created_at", "sent_at"]


class OutboxViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = OutboxEmail.objects.all()
    serializer_class = OutboxEmailSerializer
    permission_classes = [permissions.IsAdminUser]
    filterset_fields = ["kind", "status", "user"]
    ordering_fields = ["id", "created_at"]
    ordering = ["-id"]
