"""The shipping context: shipments of paid orders."""

from django.apps import AppConfig


class ShippingConfig(AppConfig):
    name = "monolith.shipping"
    label = "shipping"
    verbose_name = "Shipping"

    def ready(self) -> None:
        from monolith.shipping import receivers  # noqa: F401  (connects signal receivers)
