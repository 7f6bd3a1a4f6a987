"""The catalog context: categories, products, prices."""

from django.apps import AppConfig


class CatalogConfig(AppConfig):
    name = "monolith.catalog"
    label = "catalog"
    verbose_name = "Catalog"
