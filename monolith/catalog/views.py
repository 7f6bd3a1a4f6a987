"""Catalog API views: read for everyone, write for staff."""

from __future__ import annotations

from django.conf import settings
from rest_framework import permissions, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import APIException
from rest_framework.request import Request
from rest_framework.response import Response

from monolith.catalog.filters import CategoryFilter, ProductFilter
from monolith.catalog.models import Category, Product
from monolith.catalog.serializers import (
    CategorySerializer,
    PriceHistorySerializer,
    ProductSerializer,
)
from monolith.utils import StaffWriteOrReadOnly


class Gone(APIException):
    status_code = status.HTTP_410_GONE
    default_detail = "Retired: product writes belong to the catalog service now (migration step 7)."
    default_code = "gone"


class CategoryViewSet(viewsets.ModelViewSet):
    """``/api/categories/``: list (paginated, ``?parent=``, ``?search=``, ``?ordering=``)."""

    queryset = Category.objects.all()
    serializer_class = CategorySerializer
    permission_classes = [StaffWriteOrReadOnly]
    filterset_class = CategoryFilter
    search_fields = ["name"]
    ordering_fields = ["id", "name"]
    ordering = ["id"]


class ProductViewSet(viewsets.ModelViewSet):
    """``/api/products/``: ``?category=&min_price=&max_price=&in_stock=&search=&ordering=``."""

    queryset = Product.objects.select_related("category")
    serializer_class = ProductSerializer
    permission_classes = [StaffWriteOrReadOnly]
    filterset_class = ProductFilter
    search_fields = ["name", "description"]
    ordering_fields = ["id", "name", "price", "created_at", "stock_count"]
    ordering = ["id"]

    def initial(self, request: Request, *args: object, **kwargs: object) -> None:
        # step 7: once retired (MONOLITH_RETIRED=catalog-writes), writes answer 410 before
        # authentication, so no client mistakes it for a permission problem
        if "catalog-writes" in settings.RETIRED and request.method not in permissions.SAFE_METHODS:
            raise Gone()
        super().initial(request, *args, **kwargs)

    @action(detail=True, methods=["get"], url_path="price-history")
    def price_history(self, request: Request, pk: str | None = None) -> Response:
        product = self.get_object()
        page = self.paginate_queryset(product.price_history.all())
        return self.get_paginated_response(PriceHistorySerializer(page, many=True).data)
