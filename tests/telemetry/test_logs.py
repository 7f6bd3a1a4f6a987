"""Log records carry the current span's trace_id/span_id (monolith's filter, catalog's JSON)."""

from __future__ import annotations

import json
import logging

from opentelemetry.sdk.trace import TracerProvider

from extracted.kit import logs
from monolith.tracing import TraceIds


def _record() -> logging.LogRecord:
    return logging.makeLogRecord({"name": "t", "msg": "hello", "levelname": "INFO"})


def test_inside_a_span_the_records_name_it_and_outside_they_do_not(monkeypatch) -> None:
    tracer = TracerProvider().get_tracer("t")
    monkeypatch.setattr(logs, "_trace_ids", None)
    logs.with_trace_ids()
    with tracer.start_as_current_span("request") as span:
        ctx = span.get_span_context()
        record = _record()
        TraceIds().filter(record)
        doc = json.loads(logs.JSONFormatter().format(_record()))
    assert record.trace_id == doc["trace_id"] == f"{ctx.trace_id:032x}"  # type: ignore[attr-defined]
    assert record.span_id == doc["span_id"] == f"{ctx.span_id:016x}"  # type: ignore[attr-defined]
    outside = _record()
    TraceIds().filter(outside)
    assert outside.trace_id == ""  # type: ignore[attr-defined]
    assert "trace_id" not in json.loads(logs.JSONFormatter().format(_record()))


def test_the_monolith_logs_name_the_trace_when_tracing_is_on() -> None:
    import os
    import subprocess
    import sys

    from tests.router.conftest import ROOT

    code = ("import django, logging; django.setup(); "
            "from opentelemetry.sdk.trace import TracerProvider; "
            "span = TracerProvider().get_tracer('t').start_span('r'); "
            "from opentelemetry import trace; "
            "ctx = trace.set_span_in_context(span); from opentelemetry import context; "
            "context.attach(ctx); logging.getLogger('django.request').error('boom'); "
            "print(f'{span.get_span_context().trace_id:032x}')")
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "monolith.settings", "PYTHONPATH": str(ROOT),
           "OTEL_TRACES_EXPORTER": "zipkin"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                         text=True, check=True)
    assert f"trace_id={out.stdout.strip()}" in out.stderr, out.stderr
