"""Inventory API: warehouses, stock levels (staff), restock (staff)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import permissions, status, viewsets
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from monolith.inventory.models import StockLevel, Warehouse
from monolith.inventory.serializers import (
    RestockSerializer,
    StockLevelSerializer,
    WarehouseSerializer,
)
from monolith.inventory.services import stock_restock


class WarehouseViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = Warehouse.objects.all()
    serializer_class = WarehouseSerializer
    ordering = ["id"]


class StockLevelViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = StockLevel.objects.all()
    serializer_class = StockLevelSerializer
    permission_classes = [permissions.IsAdminUser]
    filterset_fields = ["product", "warehouse"]
    ordering_fields = ["id", "quantity"]
    ordering = ["id"]


class RestockView(APIView):
    permission_classes = [permissions.IsAdminUser]

    @extend_schema(request=RestockSerializer, responses={201: StockLevelSerializer})
    def post(self, request: Request) -> Response:
        form = RestockSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        level = stock_restock(**form.validated_data)
        return Response(StockLevelSerializer(level).data, status=status.HTTP_201_CREATED)
