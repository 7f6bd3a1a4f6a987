"""Notifications routes under /api/."""

from rest_framework.routers import SimpleRouter

from monolith.notifications.views import OutboxViewSet

router = SimpleRouter()
router.register("outbox", OutboxViewSet, basename="outbox")
urlpatterns = router.urls
