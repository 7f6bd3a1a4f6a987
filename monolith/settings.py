"""Django settings for the legacy shop.

Five years of features piled into one project: seven context apps sharing one database,
one auth system, one settings file. ``DATABASE_URL`` selects PostgreSQL (see monolith/db.py);
otherwise SQLite under ``.strangler/``. Importing this module touches no database, so the
whole test suite can keep ``DJANGO_SETTINGS_MODULE=monolith.settings`` at no cost.
"""

from __future__ import annotations

import os

from monolith.db import REPO_ROOT, database_from_env
from telemetry import TracingSettings

BASE_DIR = REPO_ROOT / "monolith"

SECRET_KEY = os.environ.get("MONOLITH_SECRET_KEY", "dev-only-not-secret-legacy-shop")
DEBUG = os.environ.get("MONOLITH_DEBUG", "") == "1"
ALLOWED_HOSTS = ["*"]  # the router, tests and the demo reach it under varying host names
# Behind the router, absolute URLs (pagination links) must name the host the client used,
# not the upstream's loopback address, or following `next` would bypass the router.
USE_X_FORWARDED_HOST = True
# ... but only from the router: X-Forwarded-* from any other address is dropped
# (monolith/shop/proxies.py). Loopback by default, where the router runs in the stack.
TRUSTED_PROXIES = os.environ.get("MONOLITH_TRUSTED_PROXIES", "127.0.0.1/32,::1/128")
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

INSTALLED_APPS = [
    "django.contrib.admin",  # the back office nobody planned for (T17)
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    # the shop's contexts
    "monolith.catalog",
    "monolith.customers",
    "monolith.orders",
    "monolith.inventory",
    "monolith.payments",
    "monolith.shipping",
    "monolith.notifications",
    # project glue: HTML pages, auth endpoints, seed/serve commands (no tables)
    "monolith.shop",
]

MIDDLEWARE = [
    "monolith.shop.proxies.TrustedProxyMiddleware",  # first: before anything reads the host
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

ROOT_URLCONF = "monolith.urls"
WSGI_APPLICATION = "monolith.wsgi.application"
ASGI_APPLICATION = "monolith.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": database_from_env()}
# Integer auto-increment keys, on purpose: two databases inserting into copies of one
# table will hand out the same ids (T14).
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"

AUTH_PASSWORD_VALIDATORS: list[dict[str, str]] = []
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True
STATIC_URL = "static/"
LOGIN_URL = "/login/"

REST_FRAMEWORK = {
    # Token first: an anonymous request then gets 401 with WWW-Authenticate, not 403.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "DEFAULT_PAGINATION_CLASS": "monolith.utils.ShopPagination",
    "PAGE_SIZE": 20,
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.SearchFilter",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "monolith.utils.shop_exception_handler",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Legacy Shop API",
    "DESCRIPTION": "The monolith Strangler migrates, one path at a time.",
    "VERSION": "5.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"django.request": {"handlers": ["console"], "level": "ERROR"}},
}
if TracingSettings.from_env().enabled:  # each line names its trace (monolith/tracing.py)
    LOGGING["filters"] = {"trace_ids": {"()": "monolith.tracing.TraceIds"}}
    LOGGING["formatters"] = {"traced": {"format": "%(asctime)s %(levelname)s %(name)s "
                                                  "trace_id=%(trace_id)s span_id=%(span_id)s %(message)s"}}
    LOGGING["handlers"]["console"].update(filters=["trace_ids"], formatter="traced")  # type: ignore[index]

# Seeded users all share one password. Tests and the demo set MONOLITH_FAST_PASSWORDS=1 so
# that a login costs microseconds instead of PBKDF2's ~0.3 s of CPU; hashes of either kind
# verify in both modes.
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2SHA1PasswordHasher",
    "django.contrib.auth.hashers.ScryptPasswordHasher",
    "django.contrib.auth.hashers.MD5PasswordHasher",
]
if os.environ.get("MONOLITH_FAST_PASSWORDS") == "1":
    PASSWORD_HASHERS.insert(0, PASSWORD_HASHERS.pop())

# A small "served by" line on the storefront pages (`strangler up` and the demo turn it on):
# the page says the monolith rendered it, and asks the router which backend answers the
# products API now (its X-Strangler-Backend header).
# FakePay declines an order whose total is over this (monolith/payments/provider.py, T16)
CARD_LIMIT = os.environ.get("MONOLITH_CARD_LIMIT", "10000.00")

STRANGLER_SHOW_BACKEND = os.environ.get("STRANGLER_SHOW_BACKEND", "") == "1"
TEMPLATES[0]["OPTIONS"]["context_processors"].append("monolith.shop.context.served_by")

# Paths retired by migration step 7 (migrations/07-deprecate.yaml), a comma list read at
# start: `catalog-writes` makes the product write endpoints answer 410 Gone (the catalog
# service owns them). `strangler walkthrough` starts a fresh monolith with it set.
RETIRABLE = ("catalog-writes",)
RETIRED = frozenset(p.strip() for p in os.environ.get("MONOLITH_RETIRED", "").split(",") if p.strip())
if RETIRED - set(RETIRABLE):
    raise ValueError(f"MONOLITH_RETIRED={os.environ['MONOLITH_RETIRED']!r}: unknown "
                     f"{sorted(RETIRED - set(RETIRABLE))}; use a comma list of {', '.join(RETIRABLE)}")
