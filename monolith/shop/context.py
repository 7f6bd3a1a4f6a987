"""Template context for every page: whether to show which backend served it (settings)."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest


def served_by(request: HttpRequest) -> dict[str, bool]:
    return {"strangler_show_backend": settings.STRANGLER_SHOW_BACKEND}
