"""OpenTelemetry for every part (router, monolith, catalog, CDC): settings and the exporter.

Place in the flow: each process calls `telemetry.provider.setup(settings)` once at start
(after any fork); `TracingSettings.from_env` reads the standard ``OTEL_*`` variables, and the
router's ``tracing:`` block in routes.yaml gives its defaults. Off unless asked for: with no
exporter configured the OpenTelemetry SDK is not even imported and no span is made. Spans
leave through a `BatchSpanProcessor` (a background thread: a request never waits on an
export); an export that fails (Zipkin or the collector down) drops its spans and counts
them (`provider.SpanCounts`), which the router shows in status and metrics.

Imports none of the parts (an import-linter contract), like `forwarding`.
"""

from telemetry.settings import EXPORTERS, TracingError, TracingSettings

__all__ = ["EXPORTERS", "TracingError", "TracingSettings"]
