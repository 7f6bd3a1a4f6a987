"""The payments context: payment attempts and refunds (a fake provider that always authorises)."""

from django.apps import AppConfig


class PaymentsConfig(AppConfig):
    name = "monolith.payments"
    label = "payments"
    verbose_name = "Payments"

    def ready(self) -> None:
        from monolith.payments import receivers  # noqa: F401  (connects signal receivers)
