"""Order JSON: nests catalog, customers, payments and shipping serializers (tangle T12).

The order page needed everything at once, so an order embeds full product objects,
the address, the payments and the shipment. Every one of those contexts' field lists is
now part of the orders API contract.
"""

from __future__ import annotations

from decimal import Decimal

from rest_framework import serializers

from monolith.catalog.models import Product
from monolith.catalog.serializers import ProductSerializer
from monolith.customers.models import Address
from monolith.customers.serializers import AddressSerializer
from monolith.orders.models import Cart, CartItem, Order, OrderLine
from monolith.orders.services import MAX_QUANTITY
from monolith.payments.serializers import PaymentSerializer
from monolith.shipping.serializers import ShipmentSerializer


class CartItemSerializer(serializers.ModelSerializer):
    product = ProductSerializer(read_only=True)
    line_total = serializers.SerializerMethodField()

    class Meta:
        model = CartItem
        fields = ["product", "quantity", "line_total"]

    def get_line_total(self, item: CartItem) -> Decimal:
        return item.product.price * item.quantity


class CartSerializer(serializers.ModelSerializer):
    items = serializers.SerializerMethodField()
    total = serializers.SerializerMethodField()

    class Meta:
        model = Cart
        fields = ["id", "items", "total"]

    def get_items(self, cart: Cart) -> list:
        items = cart.items.select_related("product__category")
        return CartItemSerializer(items, many=True).data

    def get_total(self, cart: Cart) -> str:
        return f"{cart.total():.2f}"


class CartAddSerializer(serializers.Serializer):
    product = serializers.PrimaryKeyRelatedField(queryset=Product.objects.all())
    quantity = serializers.IntegerField(min_value=1, max_value=MAX_QUANTITY, default=1)


class PlaceOrderSerializer(serializers.Serializer):
    address = serializers.PrimaryKeyRelatedField(queryset=Address.objects.all(), required=False,
                                                 allow_null=True)

    def validate_address(self, address: Address | None) -> Address | None:
        if address is not None and address.user_id != self.context["request"].user.id:
            raise serializers.ValidationError("This address belongs to someone else.")
        return address


class OrderLineSerializer(serializers.ModelSerializer):
    product = ProductSerializer(read_only=True)  # the whole catalog product, nested

    class Meta:
        model = OrderLine
        fields = ["id", "product", "product_name", "quantity", "unit_price"]


class OrderSerializer(serializers.ModelSerializer):
    lines = OrderLineSerializer(many=True, read_only=True)
    shipping_address = AddressSerializer(read_only=True)
    payments = PaymentSerializer(many=True, read_only=True)
    shipment = serializers.SerializerMethodField()

    class Meta:
        model = Order
        fields = ["id", "status", "total", "created_at", "shipping_address", "lines",
                  "payments", "shipment"]

    def get_shipment(self, order: Order) -> dict | None:
        shipment = getattr(order, "shipment", None)
        return ShipmentSerializer(shipment).data if shipment else None
