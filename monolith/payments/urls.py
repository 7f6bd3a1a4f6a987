"""Payments routes under /api/."""

from rest_framework.routers import SimpleRouter

from monolith.payments.views import PaymentViewSet

router = SimpleRouter()
router.register("payments", PaymentViewSet, basename="payment")
urlpatterns = router.urls
