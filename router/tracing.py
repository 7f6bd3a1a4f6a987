"""Traces of the router's requests (OpenTelemetry, W3C trace context), off by default.

Place in the flow: `Router.install` calls `configure` with each config (the ``tracing:``
block, then the OTEL_* variables over it, `telemetry.settings`). Off, the proxy never calls
in here (`head.upstream_tail` builds the traceparent as it always did) and the OpenTelemetry
SDK is never imported. On, `begin` (before the upstream head is built) makes the request's
trace, the proxy reports each attempt, and `finish` runs after the access-log line:

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
    from router.types import Message, Scope, Send
    from router.types import RouterCore as Router

_TRACEPARENT = re.compile(rb"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_IN_TAIL = re.compile(rb"traceparent: 00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})\r\n")
SERVICE_NAME = "strangler-router"
_current: contextvars.ContextVar[RequestTrace | None] = contextvars.ContextVar(
    "strangler_trace", default=None)


class RouterTracing:
    def __init__(self, router: Router) -> None:
        self.router = router
        self.enabled = False
        self.settings: TracingSettings | None = None
        self.telemetry: Any = None
        self._tracer: Any = None
        self.resource: Any = None
        self.scope: Any = None
        self.flags: Any = None
        self.sample = 1.0
        self.sdk: tuple[Any, ...] = ()
        self.error: Any = None
        self.unset: Any = None
        self._weights: dict[tuple[tuple[str, int], ...], str] = {}

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
        from opentelemetry.sdk.util.instrumentation import InstrumentationScope
        from opentelemetry.trace import TraceFlags

        self.resource = self.telemetry.provider.resource
        self.scope = InstrumentationScope("strangler.router", "1")  # Zipkin refuses a null version
        self.flags = TraceFlags(TraceFlags.SAMPLED)
        self.sample = settings.sample
        from opentelemetry.sdk.trace import Event, ReadableSpan
        from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode

        # Bound once: an import statement in RequestTrace.end cost ~5 us per request.
        self.sdk = (Event, ReadableSpan, SpanContext, SpanKind, Status, StatusCode)
        self.error, self.unset = Status(StatusCode.ERROR), Status(StatusCode.UNSET)
        counts = self.telemetry.counts
        metrics = self.router.metrics
        metrics.tracing = counts.as_dict()

        def changed() -> None:
            metrics.tracing = counts.as_dict()
            metrics.dirty = True

        counts.on_change = changed
        self.router.access_log.trace_ids = current_ids
        self.enabled = True

    def weights(self, route: Route) -> str:
        text = self._weights.get(route.backends)
        if text is None:
            text = self._weights[route.backends] = ",".join(f"{b}={w}" for b, w in route.backends)
        return text

    def stop(self) -> None:
        self.enabled = False
        if self.telemetry is not None:
            self.telemetry.flush(2000)
            self.telemetry.shutdown()
            self.telemetry = None

    # --- the request path -----------------------------------------------------------------
    def begin(self, tp: bytes | None, req: Any, scope: Scope, route: Route,
              backend: str) -> bytes:
        """Tracing on: the upstream's traceparent; `req.trace` (and a `req.send` that ends
        the spans with the response) unless a new trace is sampled out."""
        if tp is None and self.sample < 1.0 and random.random() >= self.sample:
            # A new trace sampled out: nothing is recorded, so nothing is built (the
            # upstream's traceparent says "not sampled", and its side records nothing).
            return b"00-%032x-%016x-00" % (random.getrandbits(128), random.getrandbits(64))
        trace = RequestTrace(self, tp, scope, route, backend, req.cohort, req.started)
        req.trace = trace
        req.send = trace.wrap(req.send)
        trace.token = _current.set(trace)
        self.router.access_log.trace_ids = current_ids  # a reload may have made a new log
        return trace.traceparent

    def finish(self, trace: RequestTrace) -> None:
        """After the request and its access-log line: end whatever is still open."""
        trace.end()
        if trace.token is not None:
            with contextlib.suppress(ValueError):
                _current.reset(trace.token)
            trace.token = None

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
    """The spans of one proxied request, built as finished `ReadableSpan`s when it ends.

    Not through the OpenTelemetry span API: three spans made with it cost ~150 µs of CPU per
    request here, the same three built once at the end ~7 µs (benchmarks/README.md).
    Sampling follows the caller's sampled flag, else `sample` for a new trace.
    """

    def __init__(self, tracing: RouterTracing, tp: bytes | None, scope: Scope, route: Route,
                 backend: str, new_cohort: bytes | None, started: float) -> None:
        self.tracing = tracing
        self.token: contextvars.Token[RequestTrace | None] | None = None
        self.now = time.time_ns()
        self.begun = self.now - int((perf_counter() - started) * 1e9)
        found = _TRACEPARENT.match(tp) if tp is not None else None
        if found:
            self.trace_id = int(found.group(1), 16)
            self.parent_id: int | None = int(found.group(2), 16)
            self.sampled = bool(int(found.group(3), 16) & 1)
        else:
            self.trace_id, self.parent_id = random.getrandbits(128), None
            sample = tracing.sample
            self.sampled = sample >= 1.0 or random.random() < sample
        self.server_id, self.choose_id, self.upstream_id = (
            random.getrandbits(64), random.getrandbits(64), random.getrandbits(64))
        self.route = route
        self.method = scope["method"]
        self.path = scope["path"]
        self.first = self.backend = backend
        self.cohort = "candidate" if backend == route.candidate else "current"
        self.new_cohort = new_cohort is not None
        self.attempts = 0
        self.breaker = "closed"
        self.events: list[tuple[str, str, int]] = []
        self.status: int | None = None
        self.ended = False
        self.traceparent = b"00-%032x-%016x-%s" % (self.trace_id, self.upstream_id,
                                                   b"01" if self.sampled else b"00")
        self.ids = {"trace_id": f"{self.trace_id:032x}", "span_id": f"{self.server_id:016x}"}

    def attempt(self, backend: str, breaker_state: str) -> None:
        """Before each try of an upstream (retries and the fallback included)."""
        self.attempts += 1
        if self.attempts > 1:
            self.events.append(("retry" if backend == self.first else "fallback", backend,
                                time.time_ns()))
        self.backend = backend
        self.breaker = breaker_state

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
        if not self.sampled or not self.tracing.enabled:
            return
        tracing = self.tracing
        Event, ReadableSpan, SpanContext, SpanKind, Status, StatusCode = tracing.sdk
        flags = tracing.flags
        end = time.time_ns()
        status = self.status
        if status is None:
            state = Status(StatusCode.ERROR, "no response was sent")
        else:
            state = tracing.error if status >= 500 else tracing.unset
        tid = self.trace_id
        server = SpanContext(tid, self.server_id, False, flags)
        parent = SpanContext(tid, self.parent_id, True, flags) if self.parent_id else None
        route = self.route.name
        common = {"resource": tracing.resource, "instrumentation_scope": tracing.scope}
        code = {"http.response.status_code": status} if status is not None else {}
        spans = (
            ReadableSpan(name=f"{self.method} {route}", context=server, parent=parent,
                         kind=SpanKind.SERVER, start_time=self.begun, end_time=end, status=state,
                         attributes={"http.request.method": self.method, "url.path": self.path,
                                     "strangler.route": route, "strangler.backend": self.backend,
                                     "strangler.cohort": self.cohort, **code}, **common),
            ReadableSpan(name="choose", context=SpanContext(tid, self.choose_id, False, flags),
                         parent=server, kind=SpanKind.INTERNAL, start_time=self.begun,
                         end_time=self.now, attributes={
                             "strangler.route": route, "strangler.backend": self.first,
                             "strangler.cohort": self.cohort, "strangler.cohort.new": self.new_cohort,
                             "strangler.weights": tracing.weights(self.route)},
                         **common),
            ReadableSpan(name="upstream", context=SpanContext(tid, self.upstream_id, False, flags),
                         parent=server, kind=SpanKind.CLIENT, start_time=self.now, end_time=end,
                         status=state, attributes={
                             "strangler.backend": self.backend, "strangler.attempts": self.attempts,
                             "strangler.retries": max(self.attempts - 1, 0),
                             "strangler.fallback": self.backend != self.first,
                             "strangler.breaker": self.breaker, **code},
                         events=[Event(name, {"strangler.backend": b}, timestamp=ts)
                                 for name, b, ts in self.events], **common),
        )
        processor = tracing.telemetry.processor
        for span in spans:
            processor.on_end(span)
