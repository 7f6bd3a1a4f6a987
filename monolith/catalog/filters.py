"""Query-string filters for the product listing (``?category=&min_price=&max_price=``)."""

from __future__ import annotations

import django_filters

from monolith.catalog.models import Category, Product

BOOL_CHOICES = [("true", "true"), ("false", "false")]


class ProductFilter(django_filters.FilterSet):
    category = django_filters.ModelChoiceFilter(queryset=Category.objects.all())
    min_price = django_filters.NumberFilter(field_name="price", lookup_expr="gte")
    max_price = django_filters.NumberFilter(field_name="price", lookup_expr="lte")
    # strict choices: a typo like ?in_stock=yes is a 400, not a silently ignored filter
    in_stock = django_filters.ChoiceFilter(choices=BOOL_CHOICES, method="filter_in_stock")
    is_active = django_filters.ChoiceFilter(choices=BOOL_CHOICES, method="filter_is_active")

    class Meta:
        model = Product
        fields = ["category", "min_price", "max_price", "in_stock", "is_active"]

    def filter_in_stock(self, queryset, name, value):  # type: ignore[no-untyped-def]
        if value == "true":
            return queryset.filter(stock_count__gt=0)
        return queryset.filter(stock_count__lte=0)

    def filter_is_active(self, queryset, name, value):  # type: ignore[no-untyped-def]
        return queryset.filter(is_active=value == "true")


class CategoryFilter(django_filters.FilterSet):
    parent = django_filters.ModelChoiceFilter(queryset=Category.objects.all())

    class Meta:
        model = Category
        fields = ["parent"]
