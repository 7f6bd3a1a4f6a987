"""JSON shapes of the customers API (addresses, profile)."""

from __future__ import annotations

from rest_framework import serializers

from monolith.customers.models import Address, Profile


class AddressSerializer(serializers.ModelSerializer):
    class Meta:
        model = Address
        fields = ["id", "label", "line1", "city", "postcode", "country", "is_default"]


class ProfileSerializer(serializers.ModelSerializer):
    username = serializers.CharField(source="user.username", read_only=True)
    email = serializers.EmailField(source="user.email", read_only=True)
    lifetime_value = serializers.DecimalField(max_digits=12, decimal_places=2, read_only=True)

    class Meta:
        model = Profile
        fields = ["username", "email", "phone", "marketing_opt_in", "loyalty_points",
                  "lifetime_value"]
        read_only_fields = ["loyalty_points"]

    def to_representation(self, instance: Profile) -> dict:
        instance.lifetime_value = instance.lifetime_value()  # type: ignore[method-assign,assignment]
        return super().to_representation(instance)
