"""A data migration that reaches into another context (T18): loyalty points recomputed from
the orders table, the way the shop's first loyalty release filled them in.

It reads `orders_order` from the customers app's migration history, so the customers schema
cannot be migrated (or moved to a database of its own) without the orders tables beside it.
"""

from django.db import migrations


def backfill_loyalty_points(apps, schema_editor):  # type: ignore[no-untyped-def]
    Profile = apps.get_model("customers", "Profile")
    Order = apps.get_model("orders", "Order")  # another context's table, read here (T18)
    points: dict[int, int] = {}
    for user_id, total in Order.objects.values_list("user_id", "total").iterator():
        points[user_id] = points.get(user_id, 0) + int(total) // 10  # as orders' receiver awards them (T11)
    for profile in Profile.objects.filter(user_id__in=points).iterator():
        if profile.loyalty_points < points[profile.user_id]:
            Profile.objects.filter(pk=profile.pk).update(loyalty_points=points[profile.user_id])


class Migration(migrations.Migration):
    dependencies = [
        ("customers", "0001_initial"),
        ("orders", "0001_initial"),  # a customers migration that needs the orders schema
    ]

    operations = [migrations.RunPython(backfill_loyalty_points, migrations.RunPython.noop)]
