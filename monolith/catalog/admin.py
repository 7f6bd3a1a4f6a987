"""The Django admin over the catalog: the back office the staff actually use (T17).

Nobody planned it as an API, yet it writes `catalog_product` directly through the model
form: a price edited here skips the serializer that records `PriceHistory`, and once the
catalog service owns the table's writes the admin is a second writer nobody routed.
"""

from django.contrib import admin

from monolith.catalog.models import Category, Product


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("id", "name", "price", "stock_count", "is_active")
    search_fields = ("name",)
    fields = ("name", "description", "price", "is_active", "category")  # a price edit here writes no history


@admin.register(Category)
class CategoryAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("id", "name")
