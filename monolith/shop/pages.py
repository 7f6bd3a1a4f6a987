"""Server-rendered HTML pages: storefront and product page (real monoliths serve HTML too)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from monolith.catalog.models import Category, Product


def storefront(request: HttpRequest) -> HttpResponse:
    products = Product.objects.select_related("category").filter(is_active=True)[:24]
    categories = Category.objects.filter(parent__isnull=True)[:20]
    return render(request, "shop/storefront.html",
                  {"products": products, "categories": categories})


def product_page(request: HttpRequest, pk: int) -> HttpResponse:
    product = get_object_or_404(Product.objects.select_related("category"), pk=pk)
    return render(request, "shop/product.html", {"product": product})
