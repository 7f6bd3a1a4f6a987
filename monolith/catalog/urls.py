"""Catalog routes, mounted under ``/api/`` by monolith/urls.py."""

from rest_framework.routers import SimpleRouter

from monolith.catalog.views import CategoryViewSet, ProductViewSet

router = SimpleRouter()
router.register("categories", CategoryViewSet, basename="category")
router.register("products", ProductViewSet, basename="product")

urlpatterns = router.urls
