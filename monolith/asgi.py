"""ASGI entry point: ``uvicorn monolith.asgi:application`` (what the stack and demo run)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "monolith.settings")
application = get_asgi_application()
