"""Orders writes the customers context's loyalty points on every placed order (T11)."""

from django.db.models import F
from django.dispatch import receiver

from monolith.customers.models import Profile
from monolith.orders.signals import order_placed


@receiver(order_placed, dispatch_uid="orders.loyalty")
def award_loyalty_points(sender, order, **kwargs):  # type: ignore[no-untyped-def]
    profile, _ = Profile.objects.get_or_create(user_id=order.user_id)
    Profile.objects.filter(pk=profile.pk).update(
        loyalty_points=F("loyalty_points") + int(order.total) // 10)
