"""Orders routes under /api/."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from monolith.orders.views import (
    CartItemsView,
    CartItemView,
    CartView,
    OrderViewSet,
    SalesReportView,
)

router = SimpleRouter()
router.register("orders", OrderViewSet, basename="order")

urlpatterns = [
    path("cart/", CartView.as_view(), name="cart"),
    path("cart/items/", CartItemsView.as_view(), name="cart-items"),
    path("cart/items/<int:product_id>/", CartItemView.as_view(), name="cart-item"),
    path("reports/sales/", SalesReportView.as_view(), name="sales-report"),
    *router.urls,
]
