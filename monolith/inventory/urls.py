"""Inventory routes under /api/."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from monolith.inventory.views import RestockView, StockLevelViewSet, WarehouseViewSet

router = SimpleRouter()
router.register("warehouses", WarehouseViewSet, basename="warehouse")
router.register("stock", StockLevelViewSet, basename="stock")

urlpatterns = [path("stock/restock/", RestockView.as_view(), name="restock"), *router.urls]
