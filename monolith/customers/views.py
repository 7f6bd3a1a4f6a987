"""Customers API: my addresses (``/api/addresses/``) and my profile (``/api/profile/``)."""

from __future__ import annotations

from rest_framework import generics, permissions, viewsets

from monolith.customers.models import Address, Profile
from monolith.customers.serializers import AddressSerializer, ProfileSerializer


class AddressViewSet(viewsets.ModelViewSet):
    serializer_class = AddressSerializer
    permission_classes = [permissions.IsAuthenticated]
    filterset_fields = ["country", "is_default"]
    ordering_fields = ["id", "city"]
    ordering = ["id"]

    def get_queryset(self):  # type: ignore[no-untyped-def]
        if getattr(self, "swagger_fake_view", False):  # the OpenAPI schema is built without a user
            return Address.objects.none()
        return Address.objects.filter(user=self.request.user)

    def perform_create(self, serializer):  # type: ignore[no-untyped-def]
        serializer.save(user=self.request.user)


class ProfileView(generics.RetrieveUpdateAPIView):
    serializer_class = ProfileSerializer
    permission_classes = [permissions.IsAuthenticated]
    http_method_names = ["get", "patch", "options"]

    def get_object(self) -> Profile:
        profile, _ = Profile.objects.select_related("user").get_or_create(user=self.request.user)
        return profile
