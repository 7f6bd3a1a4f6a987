"""Catalog API views: read for everyone, write for staff."""

from __future__ import annotations

from rest_framework import viewsets
from rest_framework.decorators import action
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

    @action(detail=True, methods=["get"], url_path="price-history")
    def price_history(self, request: Request, pk: str | None = None) -> Response:
        product = self.get_object()
        page = self.paginate_queryset(product.price_history.all())
        return self.get_paginated_response(PriceHistorySerializer(page, many=True).data)
