"""A TracerProvider for one process: the exporter named by the settings, spans counted.

`setup(settings)` builds it (and makes it the global provider, which OpenTelemetry's
instrumentations use) or returns None when tracing is off. Counting: `ended` spans handed
to the batch processor, `exported` ones the backend accepted, `dropped` ones lost — an export
that failed or raised (backend down, refused), or a full queue (the batch processor's own
drops are the ended spans never exported nor failed, once the queue is flushed).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

from telemetry.settings import TracingSettings

log = logging.getLogger("telemetry")


@dataclass
class SpanCounts:
    ended: int = 0
    exported: int = 0
    dropped: int = 0
    last_error: str | None = None
    on_change: Any = None  # called (no arguments) after an export, e.g. to mark metrics dirty
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {"ended": self.ended, "exported": self.exported, "dropped": self.dropped,
                "last_error": self.last_error}


class CountingExporter(SpanExporter):
    """Wraps the real exporter: counts what it sent and what it lost, never raises."""

    def __init__(self, inner: SpanExporter, counts: SpanCounts) -> None:
        self.inner = inner
        self.counts = counts

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self.inner.export(spans)
            error = None if result is SpanExportResult.SUCCESS else "the backend refused the batch"
        except Exception as exc:  # noqa: BLE001 - a dead backend must cost only the spans
            result, error = SpanExportResult.FAILURE, f"{type(exc).__name__}: {exc}"[:300]
        with self.counts._lock:
            if error is None:
                self.counts.exported += len(spans)
            else:
                self.counts.dropped += len(spans)
                self.counts.last_error = error
        if error is not None:
            log.debug("dropped %d spans: %s", len(spans), error)
        if self.counts.on_change is not None:
            self.counts.on_change()
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


class CountingProcessor(BatchSpanProcessor):
    def __init__(self, exporter: SpanExporter, counts: SpanCounts) -> None:
        super().__init__(exporter)
        self.counts = counts

    def on_end(self, span: ReadableSpan) -> None:
        if span.context is None or not span.context.trace_flags.sampled:
            return
        self.counts.ended += 1
        # The batch processor drops a span silently (a log line) when its queue is full,
        # e.g. while the backend is slow: count it here, where it is still known.
        batch = getattr(self, "_batch_processor", None)
        queue = getattr(batch, "_queue", None)
        if queue is not None and len(queue) >= getattr(batch, "_max_queue_size", float("inf")):
            with self.counts._lock:
                self.counts.dropped += 1
                self.counts.last_error = "the export queue was full"
            return
        super().on_end(span)


@dataclass
class Telemetry:
    settings: TracingSettings
    provider: TracerProvider
    counts: SpanCounts
    processor: CountingProcessor  # spans built elsewhere (the router's) are handed to it

    def tracer(self, name: str) -> trace.Tracer:
        return self.provider.get_tracer(name)

    def flush(self, timeout_ms: int = 5000) -> bool:
        return self.provider.force_flush(timeout_ms)

    def shutdown(self) -> None:
        self.provider.shutdown()


def make_exporter(settings: TracingSettings) -> SpanExporter:
    if settings.exporter == "zipkin":
        from telemetry.zipkin import ZipkinJSONExporter

        return ZipkinJSONExporter(settings.url)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(endpoint=settings.url)


_global: Telemetry | None = None


def setup(settings: TracingSettings, *, make_global: bool = True,
          exporter: SpanExporter | None = None) -> Telemetry | None:
    """The process's tracing (None when off). `exporter` replaces the settings' (tests)."""
    global _global
    if not settings.enabled and exporter is None:
        return None
    counts = SpanCounts()
    provider = TracerProvider(
        # Not Resource.create: Zipkin repeats every resource attribute on every span (sdk
        # name, language, version, instance id), a third of the bytes encoded per span.
        resource=Resource({"service.name": settings.service_name}),
        sampler=ParentBased(TraceIdRatioBased(settings.sample)),
    )
    processor = CountingProcessor(CountingExporter(exporter or make_exporter(settings), counts), counts)
    provider.add_span_processor(processor)
    tel = Telemetry(settings=settings, provider=provider, counts=counts, processor=processor)
    if make_global and _global is None:
        trace.set_tracer_provider(provider)  # once per process: OpenTelemetry refuses a second
        _global = tel
    return tel


def installed() -> Telemetry | None:
    """The process's global tracing, if `setup` made one."""
    return _global
