"""A post-save signal on Django's user model (T19): every new user gets a profile and a
welcome e-mail, from whichever code created the user — the admin, a login backend, a test,
a management command. `bulk_create` sends no signal, so the seed makes its profiles itself.
"""

from django.conf import settings
from django.db.models.signals import post_save
from django.dispatch import receiver

from monolith.customers.models import Profile
from monolith.utils import queue_email


@receiver(post_save, sender=settings.AUTH_USER_MODEL, dispatch_uid="customers.profile")
def create_profile(sender, instance, created, raw=False, **kwargs):  # type: ignore[no-untyped-def]
    if not created or raw:  # raw: loaddata replays rows, it does not sign anyone up
        return
    Profile.objects.get_or_create(user=instance)  # customers writes on auth's save (T19)
    queue_email(user=instance, kind="welcome", subject="Welcome to the shop",
                body=f"Hello {instance.username}, your account is ready.")  # and notifications' outbox
