"""Spans to Zipkin's v2 JSON API (``POST /api/v2/spans``), encoded lean.

OpenTelemetry's own Zipkin JSON exporter spent ~68 µs of CPU per router request (three
spans) encoding, in the router's process; this one about half, with the same
mapping: ids as hex, times in µs, attributes as string tags (bools ``true``/``false``,
sequences as JSON arrays), the status as ``otel.status_code`` (and ``error``), events as
annotations, the resource's ``service.name`` as the local endpoint. Links have no place in
Zipkin's model; a linking span also carries the linked id as a tag (router.tracing).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

import msgspec
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind, StatusCode

_KINDS = {SpanKind.SERVER: "SERVER", SpanKind.CLIENT: "CLIENT", SpanKind.PRODUCER: "PRODUCER",
          SpanKind.CONSUMER: "CONSUMER"}
TIMEOUT = 10.0


def _tag(value: Any) -> str:
    kind = type(value)
    if kind is str:
        return value  # type: ignore[no-any-return]
    if kind is bool:
        return "true" if value else "false"
    if kind is int or kind is float:
        return str(value)
    if isinstance(value, list | tuple):
        return json.dumps(list(value))
    return str(value)


def encode(span: ReadableSpan) -> dict[str, Any]:
    ctx = span.context
    assert ctx is not None and span.start_time is not None and span.end_time is not None
    start = span.start_time // 1000
    doc: dict[str, Any] = {
        "traceId": f"{ctx.trace_id:032x}", "id": f"{ctx.span_id:016x}", "name": span.name,
        "timestamp": start, "duration": max(span.end_time // 1000 - start, 1),
        "localEndpoint": {"serviceName": span.resource.attributes.get("service.name", "unknown")},
    }
    if span.parent is not None:
        doc["parentId"] = f"{span.parent.span_id:016x}"
    kind = _KINDS.get(span.kind)
    if kind:
        doc["kind"] = kind
    tags = {k: _tag(v) for k, v in (span.attributes or {}).items()}
    if span.status.status_code is StatusCode.ERROR:
        tags["otel.status_code"] = "ERROR"
        tags["error"] = span.status.description or ""
    if tags:
        doc["tags"] = tags
    if span.events:
        doc["annotations"] = [{"timestamp": e.timestamp // 1000, "value": e.name}
                              for e in span.events]
    return doc


class ZipkinJSONExporter(SpanExporter):
    def __init__(self, endpoint: str, *, timeout: float = TIMEOUT) -> None:
        self.endpoint = endpoint
        self.timeout = timeout

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        body = msgspec.json.encode([encode(s) for s in spans])  # ~5x json.dumps here
        request = urllib.request.Request(self.endpoint, data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                ok = response.status < 300
        except urllib.error.HTTPError:
            return SpanExportResult.FAILURE  # refused (400: a span Zipkin cannot read)
        return SpanExportResult.SUCCESS if ok else SpanExportResult.FAILURE

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
