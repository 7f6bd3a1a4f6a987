"""Customers routes under /api/."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from monolith.customers.views import AddressViewSet, ProfileView

router = SimpleRouter()
router.register("addresses", AddressViewSet, basename="address")

urlpatterns = [path("profile/", ProfileView.as_view(), name="profile"), *router.urls]
