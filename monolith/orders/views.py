"""Orders API: the cart (``/api/cart/``), orders (``/api/orders/``), the sales report."""

from __future__ import annotations

from django.db.models import Prefetch
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import mixins, permissions, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from monolith.orders.models import Order, OrderLine
from monolith.orders.reports import sales_by_category
from monolith.orders.serializers import (
    CartAddSerializer,
    CartSerializer,
    OrderSerializer,
    PlaceOrderSerializer,
)
from monolith.orders.services import cart_add, cart_for, cart_remove, order_cancel, order_place


class CartView(APIView):
    permission_classes = [permissions.IsAuthenticated]

    @extend_schema(responses=CartSerializer)
    def get(self, request: Request) -> Response:
        return Response(CartSerializer(cart_for(request.user)).data)


class CartItemsView(APIView):
    permission_classes = [permissions.IsAuthenticated]

    @extend_schema(request=CartAddSerializer, responses={201: CartSerializer})
    def post(self, request: Request) -> Response:
        form = CartAddSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        cart = cart_add(user=request.user, **form.validated_data)
        return Response(CartSerializer(cart).data, status=status.HTTP_201_CREATED)


class CartItemView(APIView):
    permission_classes = [permissions.IsAuthenticated]

    @extend_schema(responses=CartSerializer)
    def delete(self, request: Request, product_id: int) -> Response:
        return Response(CartSerializer(cart_remove(user=request.user, product_id=product_id)).data)


class OrderViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin,
                   viewsets.GenericViewSet):
    """My orders, newest first (staff see everyone's); POST places the cart as an order."""

    serializer_class = OrderSerializer
    permission_classes = [permissions.IsAuthenticated]
    filterset_fields = ["status"]
    ordering_fields = ["id", "created_at", "total"]
    ordering = ["-created_at", "-id"]

    def get_queryset(self):  # type: ignore[no-untyped-def]
        if getattr(self, "swagger_fake_view", False):  # the OpenAPI schema is built without a user
            return Order.objects.none()
        qs = Order.objects.select_related("shipping_address", "shipment").prefetch_related(
            Prefetch("lines", OrderLine.objects.select_related("product__category")), "payments")
        user = self.request.user
        return qs if user.is_staff else qs.filter(user=user)

    @extend_schema(request=PlaceOrderSerializer, responses={
        201: OrderSerializer,
        402: inline_serializer("PaymentDeclined", {"detail": serializers.CharField()}),  # FakePay said no (T16)
    })
    def create(self, request: Request, *args: object, **kwargs: object) -> Response:
        form = PlaceOrderSerializer(data=request.data, context={"request": request})
        form.is_valid(raise_exception=True)
        order = order_place(user=request.user, address=form.validated_data.get("address"))
        return Response(OrderSerializer(self.get_queryset().get(pk=order.pk)).data,
                        status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses=OrderSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str | None = None) -> Response:
        order = order_cancel(order=self.get_object())
        return Response(OrderSerializer(self.get_queryset().get(pk=order.pk)).data)


class SalesReportView(APIView):
    permission_classes = [permissions.IsAdminUser]

    @extend_schema(parameters=[OpenApiParameter("limit", int)], responses=inline_serializer("SalesReport", {
        "results": inline_serializer("SalesByCategory", {
            "category_id": serializers.IntegerField(), "category": serializers.CharField(),
            "orders": serializers.IntegerField(), "units": serializers.IntegerField(),
            "revenue": serializers.DecimalField(max_digits=14, decimal_places=2, coerce_to_string=True),
            "shipments": serializers.IntegerField()}, many=True)}))
    def get(self, request: Request) -> Response:
        raw = request.query_params.get("limit", "20")
        if not raw.isdigit() or not 1 <= int(raw) <= 500:
            raise ValidationError({"limit": ["A whole number from 1 to 500."]})
        return Response({"results": sales_by_category(limit=int(raw))})
