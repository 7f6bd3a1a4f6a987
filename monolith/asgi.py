"""ASGI entry point: ``uvicorn monolith.asgi:application`` (what the stack and demo run)."""

import os

from django.core.asgi import get_asgi_application

from monolith.tracing import instrument

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "monolith.settings")
instrument()  # traces, when OTEL_* asks (before the handler is built)
application = get_asgi_application()
