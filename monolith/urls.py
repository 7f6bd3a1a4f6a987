"""All of the shop's URLs: the REST API under /api/, the schema, and the HTML pages."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

from monolith.shop import auth, pages

api = [
    path("", include("monolith.catalog.urls")),
    path("", include("monolith.customers.urls")),
    path("", include("monolith.orders.urls")),
    path("", include("monolith.inventory.urls")),
    path("", include("monolith.payments.urls")),
    path("", include("monolith.shipping.urls")),
    path("", include("monolith.notifications.urls")),
    path("whoami/", auth.WhoAmIView.as_view(), name="whoami"),
    path("auth/login/", auth.LoginView.as_view(), name="api-login"),
    path("auth/logout/", auth.LogoutView.as_view(), name="api-logout"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
]

urlpatterns = [
    path("api/", include(api)),
    path("", pages.storefront, name="storefront"),
    path("products/<int:pk>/", pages.product_page, name="product-page"),
    path("orders/", pages.order_history, name="order-history"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(next_page="/"), name="logout"),
    path("admin/", admin.site.urls),  # the back office: writes every context's tables directly (T17)
]
