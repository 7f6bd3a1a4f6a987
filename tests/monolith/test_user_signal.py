"""T19: saving a new user anywhere gives it a profile and queues a welcome e-mail."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from monolith.customers.models import Profile
from monolith.notifications.models import OutboxEmail

pytestmark = pytest.mark.django_db


def test_a_new_user_gets_a_profile_and_a_welcome_mail_from_the_signal() -> None:
    user = User.objects.create_user("newcomer", email="new@example.com", password="x")
    assert Profile.objects.filter(user=user).count() == 1
    assert list(OutboxEmail.objects.filter(user=user).values_list("kind", "to")) == [("welcome", "new@example.com")]
    user.first_name = "New"
    user.save()  # only creation signs up
    assert OutboxEmail.objects.filter(user=user).count() == 1 and Profile.objects.filter(user=user).count() == 1


def test_bulk_created_users_send_no_signal() -> None:
    User.objects.bulk_create([User(username="bulk1")])  # as the seed makes its users
    assert not Profile.objects.filter(user__username="bulk1").exists()
