"""WSGI entry point, for servers that speak WSGI (gunicorn and friends)."""

import os

from django.core.wsgi import get_wsgi_application

from monolith.tracing import instrument

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "monolith.settings")
instrument()  # traces, when OTEL_* asks (before the handler is built)
application = get_wsgi_application()
