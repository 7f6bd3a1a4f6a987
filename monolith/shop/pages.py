"""Server-rendered HTML pages: storefront, product page, order history (real monoliths serve HTML too)."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.db.models import Prefetch
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from monolith.catalog.models import Category, Product
from monolith.orders.models import Order, OrderLine


def storefront(request: HttpRequest) -> HttpResponse:
    # HTML stays in the monolith but reads the catalog's tables directly (T15)
    products = Product.objects.select_related("category").filter(is_active=True)[:24]
    categories = Category.objects.filter(parent__isnull=True)[:20]
    return render(request, "shop/storefront.html",
                  {"products": products, "categories": categories})


def product_page(request: HttpRequest, pk: int) -> HttpResponse:
    product = get_object_or_404(Product.objects.select_related("category"), pk=pk)
    return render(request, "shop/product.html", {"product": product})


@login_required
def order_history(request: HttpRequest) -> HttpResponse:
    orders = (Order.objects.filter(user=request.user)
              .prefetch_related(Prefetch("lines", OrderLine.objects.order_by("id")))[:50])
    return render(request, "shop/orders.html", {"orders": orders})
