"""The orders context: carts, orders and order lines; placing an order touches every other context."""

from django.apps import AppConfig


class OrdersConfig(AppConfig):
    name = "monolith.orders"
    label = "orders"
    verbose_name = "Orders"

    def ready(self) -> None:
        from monolith.orders import receivers  # noqa: F401  (connects signal receivers)
