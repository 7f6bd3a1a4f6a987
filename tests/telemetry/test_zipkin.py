"""telemetry/zipkin.py: ReadableSpans in Zipkin's v2 JSON model."""

from __future__ import annotations

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

from telemetry.zipkin import encode


def test_a_span_maps_to_zipkins_fields() -> None:
    flags = TraceFlags(1)
    parent = SpanContext(0xABC, 0x1, False, flags)
    span = ReadableSpan(
        name="upstream", context=SpanContext(0xABC, 0x2, False, flags), parent=parent,
        resource=Resource({"service.name": "router"}), kind=SpanKind.CLIENT,
        start_time=1_000_000_000, end_time=1_002_500_000, status=Status(StatusCode.ERROR, "cut"),
        attributes={"b": True, "n": 3, "s": "x", "l": ("a", "b")},
        events=[Event("retry", {}, timestamp=1_001_000_000)])
    doc = encode(span)
    assert doc["traceId"] == f"{0xABC:032x}" and doc["id"] == f"{2:016x}"
    assert doc["parentId"] == f"{1:016x}" and doc["kind"] == "CLIENT"
    assert (doc["timestamp"], doc["duration"]) == (1_000_000, 2500)
    assert doc["localEndpoint"] == {"serviceName": "router"}
    assert doc["tags"] == {"b": "true", "n": "3", "s": "x", "l": '["a", "b"]',
                           "otel.status_code": "ERROR", "error": "cut"}
    assert doc["annotations"] == [{"timestamp": 1_001_000, "value": "retry"}]
    root = ReadableSpan(name="r", context=parent, resource=Resource({}), kind=SpanKind.INTERNAL,
                        start_time=5_000, end_time=5_000)
    doc = encode(root)
    assert "parentId" not in doc and "kind" not in doc and doc["duration"] == 1
