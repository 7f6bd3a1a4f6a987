"""Signals the payments context sends (shipping listens)."""

from django.dispatch import Signal

payment_authorized = Signal()  # kwargs: payment
