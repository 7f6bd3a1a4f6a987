"""Django settings for the legacy shop (placeholder until the shop lands)."""

SECRET_KEY = "dev-only-not-secret"
INSTALLED_APPS: list[str] = []
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
USE_TZ = True
