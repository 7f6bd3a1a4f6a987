"""The customers context: customer profiles and addresses, on top of Django's auth users."""

from django.apps import AppConfig


class CustomersConfig(AppConfig):
    name = "monolith.customers"
    label = "customers"
    verbose_name = "Customers"

