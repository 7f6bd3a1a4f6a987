"""Traces of the router's requests (OpenTelemetry, W3C trace context), off by default.

Place in the flow: `Router.install` calls `configure` with each config (the ``tracing:``
block, then the OTEL_* variables over it, `telemetry.settings`). Off, `start` only builds the
upstream's ``traceparent`` as the router always did (the caller's trace id kept, a fresh
parent id) and the OpenTelemetry SDK is never imported. On, each proxied request gets

    <METHOD> <route>   SERVER  (the caller's traceparent as parent, or a new trace)
    ├── choose         INTERNAL  match + backend choice: route, backend, cohort
    └── upstream       CLIENT    its id is the traceparent the upstream sees; backend,
                                 attempts, retries, fallback, breaker state
        └── shadow <b>  CLIENT   each mirrored call, linked to the primary call (router.shadow)

The spans are made after the fact with explicit times where that is cheaper (choose), and
leave through the batch processor's thread (`telemetry.provider`); Zipkin or a collector
down costs the spans only, counted in `Metrics.tracing` (status and /metrics).
Requests that match no route, and the admin API, are not traced.
"""

from __future__ import annotations

import contextlib
import contextvars
import random
import re
import time
from collections.abc import Iterator
from time import perf_counter
from typing import TYPE_CHECKING, Any

from telemetry import TracingSettings

if TYPE_CHECKING:
    from router.config import Config, Route
    from router.proxy import Message, Router, Scope, Send

_TRACEPARENT = re.compile(rb"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_IN_TAIL = re.compile(rb"traceparent: 00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})\r\n")
SCOPE_KEY = "strangler.trace"
SERVICE_NAME = "strangler-router"
_current: contextvars.ContextVar[RequestTrace | None] = contextvars.ContextVar(
    "strangler_trace", default=None)


def plain_traceparent(tp: bytes | None) -> bytes:
    """Tracing off: the caller's trace id and flags (or a new trace), a fresh parent id."""
    trace = _TRACEPARENT.match(tp) if tp is not None else None
    trace_id = trace.group(1).decode() if trace else f"{random.getrandbits(128):032x}"
    flags = trace.group(3).decode() if trace else "01"
    return f"00-{trace_id}-{random.getrandbits(64):016x}-{flags}".encode()


class RouterTracing:
    def __init__(self, router: Router) -> None:
        self.router = router
        self.enabled = False
        self.settings: TracingSettings | None = None
        self.telemetry: Any = None
        self._tracer: Any = None

    def configure(self, config: Config) -> None:
        settings = TracingSettings.from_env(defaults=config.tracing, service_name=SERVICE_NAME)
        if settings == self.settings:
            return
        self.stop()
        self.settings = settings
        if not settings.enabled:
            return
        from telemetry.provider import setup

        self.telemetry = setup(settings, make_global=False)
        self._tracer = self.telemetry.tracer("strangler.router")
        counts = self.telemetry.counts
        metrics = self.router.metrics
        metrics.tracing = counts.as_dict()

        def changed() -> None:
            metrics.tracing = counts.as_dict()
            metrics.dirty = True

        counts.on_change = changed
        self.router.access_log.trace_ids = current_ids
        self.enabled = True

    def stop(self) -> None:
        self.enabled = False
        if self.telemetry is not None:
            self.telemetry.flush(2000)
            self.telemetry.shutdown()
            self.telemetry = None

    # --- the request path -----------------------------------------------------------------
    def start(self, tp: bytes | None, send: Send, scope: Scope, route: Route, backend: str,
              new_cohort: bytes | None, started: float) -> tuple[bytes, RequestTrace | None, Send]:
        """The upstream's traceparent, the request's trace (None when off), and `send`."""
        if not self.enabled:
            return plain_traceparent(tp), None, send
        trace = RequestTrace(self._tracer, tp, scope, route, backend, new_cohort, started)
        scope[SCOPE_KEY] = trace
        trace.token = _current.set(trace)
        self.router.access_log.trace_ids = current_ids  # a reload may have made a new log
        return trace.traceparent, trace, trace.wrap(send)

    def finish(self, scope: Scope) -> None:
        """After the request (from `Router.handle`): end whatever is still open."""
        trace = scope.pop(SCOPE_KEY, None)
        if trace is not None:
            trace.end()
            if trace.token is not None:
                with contextlib.suppress(ValueError):
                    _current.reset(trace.token)

    @contextlib.contextmanager
    def shadow_call(self, tail: bytes, backend: str, role: str) -> Iterator[bytes]:
        """Around a mirrored call: a span linked to the primary call (whose traceparent the
        tail carries), and the tail with that span as the upstream's parent."""
        found = _IN_TAIL.search(tail) if self.enabled else None
        if found is None:
            yield tail
            return
        from opentelemetry import trace as otel
        from opentelemetry.trace import Link, SpanKind, Status, StatusCode

        primary = _remote(found.group(1), found.group(2), found.group(3))
        span = self._tracer.start_span(
            f"shadow {backend}", context=otel.set_span_in_context(otel.NonRecordingSpan(primary)),
            kind=SpanKind.CLIENT, links=[Link(primary, {"strangler.link": "primary call"})],
            attributes={"strangler.backend": backend, "strangler.shadow.role": role,
                        "strangler.shadow.primary_span_id": found.group(2).decode()})
        ctx = span.get_span_context()
        new = b"traceparent: 00-%b-%016x-%02x\r\n" % (found.group(1), ctx.span_id, int(ctx.trace_flags))
        try:
            yield tail[:found.start()] + new + tail[found.end():]
        except BaseException as exc:
            span.set_status(Status(StatusCode.ERROR, str(exc)[:200]))
            raise
        finally:
            span.end()


def _remote(trace_id: bytes, span_id: bytes, flags: bytes) -> Any:
    from opentelemetry.trace import SpanContext, TraceFlags

    return SpanContext(int(trace_id, 16), int(span_id, 16), is_remote=True,
                       trace_flags=TraceFlags(int(flags, 16)))


def current_ids() -> dict[str, str]:
    """The running request's trace and (router) span ids, for the access log."""
    trace = _current.get()
    return trace.ids if trace is not None else {}


class RequestTrace:
    """The spans of one proxied request."""

    def __init__(self, tracer: Any, tp: bytes | None, scope: Scope, route: Route, backend: str,
                 new_cohort: bytes | None, started: float) -> None:
        from opentelemetry import trace as otel
        from opentelemetry.trace import SpanKind

        self.token: contextvars.Token[RequestTrace | None] | None = None
        now = time.time_ns()
        begun = now - int((perf_counter() - started) * 1e9)
        found = _TRACEPARENT.match(tp) if tp is not None else None
        parent = otel.set_span_in_context(otel.NonRecordingSpan(
            _remote(*found.groups()))) if found else None
        method = scope["method"]
        cohort = "candidate" if backend == route.candidate else "current"
        self.request = tracer.start_span(
            f"{method} {route.name}", context=parent, kind=SpanKind.SERVER, start_time=begun,
            attributes={"http.request.method": method, "url.path": scope["path"],
                        "strangler.route": route.name, "strangler.backend": backend,
                        "strangler.cohort": cohort})
        inside = otel.set_span_in_context(self.request)
        tracer.start_span("choose", context=inside, start_time=begun, attributes={
            "strangler.route": route.name, "strangler.backend": backend,
            "strangler.cohort": cohort, "strangler.cohort.new": new_cohort is not None,
            "strangler.weights": ",".join(f"{b}={w}" for b, w in route.backends),
        }).end(end_time=now)
        self.upstream = tracer.start_span("upstream", context=inside, kind=SpanKind.CLIENT,
                                          start_time=now, attributes={"strangler.backend": backend})
        ctx = self.upstream.get_span_context()
        self.first = backend
        self.attempts = 0
        self.status: int | None = None
        self.ended = False
        self.traceparent = b"00-%032x-%016x-%02x" % (ctx.trace_id, ctx.span_id, int(ctx.trace_flags))
        own = self.request.get_span_context()
        self.ids = {"trace_id": f"{own.trace_id:032x}", "span_id": f"{own.span_id:016x}"}

    def attempt(self, backend: str, breaker_state: str) -> None:
        """Before each try of an upstream (retries and the fallback included)."""
        self.attempts += 1
        self.upstream.set_attributes({
            "strangler.backend": backend, "strangler.attempts": self.attempts,
            "strangler.retries": self.attempts - 1, "strangler.fallback": backend != self.first,
            "strangler.breaker": breaker_state})
        if self.attempts > 1:
            self.upstream.add_event("retry" if backend == self.first else "fallback",
                                    {"strangler.backend": backend})
        self.request.set_attribute("strangler.backend", backend)

    def wrap(self, send: Send) -> Send:
        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.status = message["status"]
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                self.end()
        return sending

    def end(self) -> None:
        if self.ended:
            return
        self.ended = True
        from opentelemetry.trace import Status, StatusCode

        status = self.status
        for span in (self.upstream, self.request):
            if status is None:
                span.set_status(Status(StatusCode.ERROR, "no response was sent"))
            else:
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_status(Status(StatusCode.ERROR))
            span.end()
