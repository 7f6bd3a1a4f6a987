"""The notifications context: an e-mail outbox (a worker would send it; the shop only queues)."""

from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "monolith.notifications"
    label = "notifications"
    verbose_name = "Notifications"

    def ready(self) -> None:
        from monolith.notifications import receivers  # noqa: F401  (connects signal receivers)
