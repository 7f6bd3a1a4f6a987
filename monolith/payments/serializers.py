"""JSON shapes of payments (nested into orders, too: T12)."""

from rest_framework import serializers

from monolith.payments.models import PaymentAttempt


class PaymentSerializer(serializers.ModelSerializer):
    class Meta:
        model = PaymentAttempt
        fields = ["id", "order", "amount", "status", "provider", "provider_ref", "created_at"]
