"""The inventory context: warehouses, stock levels and reservations."""

from django.apps import AppConfig


class InventoryConfig(AppConfig):
    name = "monolith.inventory"
    label = "inventory"
    verbose_name = "Inventory"

    def ready(self) -> None:
        from monolith.inventory import receivers  # noqa: F401  (connects signal receivers)
