"""The shop's "common" module: a bit of everything, imported by every app (a tangle, T3).

It started as money formatting and grew: pagination, permissions, the API error handler,
e-mail queueing, stock helpers. Every context imports it, so it ties them all together;
extracting a service means copying the slice it needs (see monolith/TANGLES.md).
"""

from __future__ import annotations

import logging
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError
from django.utils import timezone
from rest_framework import exceptions, permissions
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response
from rest_framework.views import exception_handler

log = logging.getLogger("monolith")

CENT = Decimal("0.01")
CURRENCY = "EUR"


def money(value: Any) -> Decimal:
    """A Decimal rounded to cents the way accounting wants it (half up)."""
    return Decimal(str(value)).quantize(CENT, rounding=ROUND_HALF_UP)


def now() -> Any:
    return timezone.now()


class ShopPagination(PageNumberPagination):
    """count/next/previous/results, ``?page=`` and ``?page_size=`` (at most 100)."""

    page_size = 20
    page_size_query_param = "page_size"
    max_page_size = 100


class StaffWriteOrReadOnly(permissions.BasePermission):
    """Anyone may read; only staff may write (catalog edits)."""

    def has_permission(self, request: Any, view: Any) -> bool:
        if request.method in permissions.SAFE_METHODS:
            return True
        return bool(request.user and request.user.is_authenticated and request.user.is_staff)


def shop_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's error format everywhere, also for model-level validation and DB constraint errors.

    Without this, a ``full_clean`` failure or a unique violation deep in a service would be
    a 500; clients get a 400 with ``{"field": ["message"]}`` or ``{"detail": "..."}``.
    """
    if isinstance(exc, DjangoValidationError):
        detail: Any = exc.message_dict if hasattr(exc, "error_dict") else {"detail": exc.messages}
        exc = exceptions.ValidationError(detail)
    elif isinstance(exc, IntegrityError):
        log.warning("integrity error turned into 400: %s", exc)
        exc = exceptions.ValidationError({"detail": ["This conflicts with existing data."]})
    return exception_handler(exc, context)


def queue_email(*, user: Any, kind: str, subject: str, body: str) -> None:
    """Put an e-mail in the notifications outbox (any context may call this)."""
    # Local import: notifications imports this module at load time (T8, again).
    from monolith.notifications.models import OutboxEmail

    OutboxEmail.objects.create(user=user, to=user.email or f"{user.username}@unknown.example",
                               kind=kind, subject=subject, body=body)


def sync_product_stock(product_ids: list[int]) -> None:
    """Recompute ``catalog_product.stock_count`` from inventory's stock levels (T4, writer 1)."""
    from django.db.models import F, OuterRef, Subquery, Sum
    from django.db.models.functions import Coalesce

    from monolith.catalog.models import Product
    from monolith.inventory.models import StockLevel

    available = (
        StockLevel.objects.filter(product_id=OuterRef("pk")).values("product_id")
        .annotate(a=Sum(F("quantity") - F("reserved"))).values("a")
    )
    Product.objects.filter(pk__in=product_ids).update(
        stock_count=Coalesce(Subquery(available), 0)
    )
