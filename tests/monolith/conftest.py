"""Fixtures for the shop's tests: one small seeded database per session, API clients.

Everything here applies to tests/monolith only; other areas never pay for Django's DB setup.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.test.utils import override_settings
from rest_framework.test import APIClient

FAST_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(scope="session", autouse=True)
def _fast_passwords() -> Iterator[None]:
    # PBKDF2 costs ~0.3 s per login; tests log in a lot. Seeded users share one hash.
    with override_settings(PASSWORD_HASHERS=FAST_HASHERS):
        yield


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker, _fast_passwords):  # type: ignore[no-untyped-def]
    """The test database, migrated and seeded with the small size once."""
    from monolith.shop.seeding import seed

    with django_db_blocker.unblock():
        seed("small")


@pytest.fixture
def anon(db) -> APIClient:  # type: ignore[no-untyped-def]
    return APIClient()


@pytest.fixture
def customer(db) -> APIClient:  # type: ignore[no-untyped-def]
    from django.contrib.auth.models import User

    client = APIClient()
    client.force_login(User.objects.get(username="customer1"))
    return client


@pytest.fixture
def staff(db) -> APIClient:  # type: ignore[no-untyped-def]
    from django.contrib.auth.models import User

    client = APIClient()
    client.force_login(User.objects.get(username="staff1"))
    return client
