"""Traces for a service (off unless OTEL_* says otherwise; `telemetry.settings`).

On: the OpenTelemetry Starlette instrumentation continues the router's trace (its
``traceparent``) with a SERVER span per request, and the SQLAlchemy instrumentation puts a
span per statement under it; log lines carry ``trace_id``/``span_id`` (`logs`).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine
from starlette.applications import Starlette

from telemetry import TracingSettings


def instrument(app: Starlette, engine: Engine, *, service_name: str) -> Any:
    """Trace `app` and `engine` when tracing is on; the process's `Telemetry` or None."""
    settings = TracingSettings.from_env(service_name=service_name)
    if not settings.enabled:
        return None
    from opentelemetry.instrumentation.sqlalchemy import __version__ as sqla_version
    from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
    from opentelemetry.instrumentation.starlette import StarletteInstrumentor

    from extracted.kit import logs
    from telemetry.provider import installed, setup

    telemetry = installed() or setup(settings)
    assert telemetry is not None  # enabled settings always make one
    StarletteInstrumentor.instrument_app(app, tracer_provider=telemetry.provider)
    # The instrumentation's own engine tracer, on this engine only: its `instrument()` also
    # patches sqlalchemy.ext.asyncio, which needs greenlet (not a dependency here), and names
    # sqlalchemy < 2.1 while 2.1 works with it (tests/telemetry/test_traces_e2e.py).
    from opentelemetry.metrics import get_meter

    usage = get_meter(__name__).create_up_down_counter("db.client.connections.usage")
    EngineTracer(telemetry.provider.get_tracer("opentelemetry.instrumentation.sqlalchemy",
                                                sqla_version), engine, usage)
    logs.with_trace_ids()
    return telemetry
