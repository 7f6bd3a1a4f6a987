"""Traces for the legacy shop (off unless OTEL_* says otherwise; `telemetry.settings`).

On: OpenTelemetry's Django instrumentation continues the router's trace with a SERVER span
per request, and its psycopg2 / sqlite3 instrumentation (whichever database is configured)
puts a span per statement under it; log records carry ``trace_id``/``span_id`` (`TraceIds`,
which settings.LOGGING installs when tracing is on). Called by `asgi` and `wsgi` before
Django builds its handler (the middleware must be in place by then).
"""

from __future__ import annotations

import logging
from typing import Any

from telemetry import TracingSettings

SERVICE_NAME = "monolith"


class TraceIds(logging.Filter):
    """Adds ``trace_id``/``span_id`` (empty outside a span) to every record it sees."""

    def filter(self, record: logging.LogRecord) -> bool:
        from telemetry.ids import current_ids

        ids = current_ids()
        record.trace_id = ids.get("trace_id", "")
        record.span_id = ids.get("span_id", "")
        return True


def instrument() -> Any:
    """Trace the shop when tracing is on; the process's `Telemetry` or None."""
    settings = TracingSettings.from_env(service_name=SERVICE_NAME)
    if not settings.enabled:
        return None
    from opentelemetry.instrumentation.django import DjangoInstrumentor
    from opentelemetry.instrumentation.psycopg2 import Psycopg2Instrumentor

    from telemetry.provider import installed, setup

    telemetry = installed() or setup(settings)
    assert telemetry is not None  # enabled settings always make one
    provider = telemetry.provider
    DjangoInstrumentor().instrument(tracer_provider=provider)
    Psycopg2Instrumentor().instrument(tracer_provider=provider, skip_dep_check=True)
    try:
        from opentelemetry.instrumentation.sqlite3 import SQLite3Instrumentor
    except ImportError:
        pass  # PostgreSQL only: sqlite3 statements go untraced
    else:
        SQLite3Instrumentor().instrument(tracer_provider=provider)
    return telemetry
