"""Customer tables, hung off Django's shared ``auth_user`` (tangle T9)."""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.utils import timezone

from monolith.utils import money


class Profile(models.Model):
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                                related_name="profile")
    phone = models.CharField(max_length=40, blank=True, default="")
    marketing_opt_in = models.BooleanField(default=False)
    # written by the orders context whenever an order is saved (T11)
    loyalty_points = models.IntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"profile of user {self.user_id}"

    def lifetime_value(self) -> Decimal:
        """Sum of this customer's orders — a customers model reaching into orders (T10)."""
        from monolith.orders.models import Order  # local import: orders imports customers

        total = Order.objects.filter(user_id=self.user_id).exclude(
            status=Order.Status.CANCELLED).aggregate(s=models.Sum("total"))["s"]
        return money(total or Decimal("0.00"))


class Address(models.Model):
    user = models.ForeignKey("auth.User", on_delete=models.CASCADE, related_name="addresses")
    label = models.CharField(max_length=40, default="home")
    line1 = models.CharField(max_length=200)
    city = models.CharField(max_length=100)
    postcode = models.CharField(max_length=20)
    country = models.CharField(max_length=2, default="DE")
    is_default = models.BooleanField(default=False)

    class Meta:
        ordering = ["id"]
        verbose_name_plural = "addresses"

    def __str__(self) -> str:
        return f"{self.line1}, {self.postcode} {self.city}"
