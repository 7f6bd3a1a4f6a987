"""The customers context: customer profiles and addresses, on top of Django's auth users."""

from django.apps import AppConfig


class CustomersConfig(AppConfig):
    name = "monolith.customers"
    label = "customers"
    verbose_name = "Customers"

    def ready(self) -> None:
        from monolith.customers import receivers  # noqa: F401  (a post_save on the user model, T19)

