"""Project glue (no tables): HTML pages, auth endpoints, whoami, and the seed/serve commands."""

from django.apps import AppConfig


class ShopConfig(AppConfig):
    name = "monolith.shop"
    label = "shop"
    verbose_name = "Shop (project glue)"
