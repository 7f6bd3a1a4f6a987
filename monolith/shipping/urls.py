"""Shipping routes under /api/."""

from rest_framework.routers import SimpleRouter

from monolith.shipping.views import ShipmentViewSet

router = SimpleRouter()
router.register("shipments", ShipmentViewSet, basename="shipment")
urlpatterns = router.urls
