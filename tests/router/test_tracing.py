"""router/tracing.py in process: the span tree of one request, the traceparent the upstream
sees, retries and the fallback as attributes, an export failure counted, off = no SDK."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import httpx
from opentelemetry.sdk.trace.export import SpanExportResult

from router.config import parse_config
from router.proxy import Router
from telemetry.provider import CountingExporter, SpanCounts
from tests.router.conftest import ROOT

ROUTES = """
upstreams:
  a: {{url: "http://127.0.0.1:{a}", breaker: {{failures: 50}}}}
  b: {{url: "http://127.0.0.1:{b}"}}
routes:
  - {{name: r, match: {{prefix: /}}, backends: {{a: 100}}, fallback: b, retries: 1}}
access_log: false
tracing: {{exporter: zipkin, endpoint: "http://127.0.0.1:9/api/v2/spans"}}
ledger: {ledger}
"""


def _router(tmp_path, upstreams, a_port=None):
    config = parse_config(ROUTES.format(a=a_port or upstreams["a"].port, b=upstreams["b"].port,
                                        ledger=tmp_path / "l.jsonl"))
    router = Router(config=config)
    return router


async def _get(router: Router, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
    await router.startup()
    spans: list = []  # every span the router hands to its batch processor
    processor = router.tracing.telemetry.processor
    handed = processor.on_end
    processor.on_end = lambda span: (spans.append(span), handed(span))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=router), base_url="http://t") as c:
        response = await c.get(path, headers=headers or {})
    response.spans = spans  # type: ignore[attr-defined]
    await router.shutdown()
    return response


def test_one_request_is_a_server_span_with_choose_and_an_upstream_call(tmp_path, upstreams) -> None:
    caller = "4bf92f3577b34da6a3ce929d0e0e4736"
    r = asyncio.run(_get(_router(tmp_path, upstreams), "/echo",
                         {"traceparent": f"00-{caller}-00f067aa0ba902b7-01"}))
    assert r.status_code == 200
    spans = {s.name: s for s in r.spans}
    server, choose, upstream = spans["GET r"], spans["choose"], spans["upstream"]
    assert {s.context.trace_id for s in r.spans} == {int(caller, 16)}
    assert server.parent.span_id == 0x00f067aa0ba902b7 and server.parent.is_remote
    assert choose.parent.span_id == upstream.parent.span_id == server.context.span_id
    assert upstream.attributes["strangler.backend"] == "a"
    assert upstream.attributes["strangler.retries"] == 0
    assert upstream.attributes["strangler.breaker"] == "closed"
    assert upstream.attributes["http.response.status_code"] == 200
    # The upstream saw the upstream span as its parent (tests/router/upstream.py echoes headers).
    seen = dict(r.json()["headers"])["traceparent"]
    assert seen == f"00-{caller}-{upstream.context.span_id:016x}-01"


def test_retries_and_the_fallback_are_attributes_of_the_upstream_call(tmp_path, upstreams) -> None:
    from devstack import free_port

    r = asyncio.run(_get(_router(tmp_path, upstreams, a_port=free_port()), "/echo"))
    assert r.status_code == 200 and r.headers["x-strangler-backend"] == "b"
    upstream = next(s for s in r.spans if s.name == "upstream")
    assert upstream.attributes["strangler.fallback"] is True
    assert upstream.attributes["strangler.backend"] == "b"
    assert upstream.attributes["strangler.attempts"] == 3  # a, a again, then b
    assert [e.name for e in upstream.events] == ["retry", "fallback"]


def test_off_never_imports_the_sdk() -> None:
    code = ("import sys; from router.config import parse_config; from router.proxy import Router; "
            "Router(config=parse_config(open(sys.argv[1]).read())).tracing.configure("
            "parse_config(open(sys.argv[1]).read())); "
            "print(any(m.startswith('opentelemetry') for m in sys.modules))")
    routes = ROOT / "routes.yaml"
    out = subprocess.run([sys.executable, "-c", code, str(routes)], cwd=ROOT, capture_output=True,
                         text=True, check=True, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)})
    assert out.stdout.strip() == "False", out.stderr


def test_a_failed_export_is_counted_as_dropped_and_never_raises() -> None:
    class Down:
        def export(self, spans):
            raise ConnectionError("connection refused")

    class Refused:
        def export(self, spans):
            return SpanExportResult.FAILURE

    counts = SpanCounts()
    assert CountingExporter(Down(), counts).export([object()] * 3) is SpanExportResult.FAILURE  # type: ignore[arg-type,list-item]
    CountingExporter(Refused(), counts).export([object()] * 2)  # type: ignore[arg-type,list-item]
    assert (counts.dropped, counts.exported) == (5, 0)
    assert "connection refused" in (counts.last_error or "") or counts.last_error


SHADOWED = """
upstreams:
  a: {{url: "http://127.0.0.1:{a}"}}
  b: {{url: "http://127.0.0.1:{b}"}}
routes:
  - name: r
    match: {{prefix: /}}
    backends: {{a: 100}}
    shadow: {{to: b, percent: 100}}
access_log: false
tracing: {{exporter: zipkin, endpoint: "http://127.0.0.1:9/api/v2/spans"}}
ledger: {ledger}
"""


def test_a_shadow_call_is_a_span_linked_to_the_primary_call(tmp_path, upstreams) -> None:
    config = parse_config(SHADOWED.format(a=upstreams["a"].port, b=upstreams["b"].port,
                                          ledger=tmp_path / "l.jsonl"))

    async def run() -> list:
        router = Router(config=config)
        await router.startup()
        spans: list = []
        processor = router.tracing.telemetry.processor
        handed = processor.on_end
        processor.on_end = lambda span: (spans.append(span), handed(span))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=router), base_url="http://t") as c:
            assert (await c.get("/echo")).status_code == 200
            for _ in range(200):
                if sum(s.name.startswith("shadow ") for s in spans) == 2:
                    break
                await asyncio.sleep(0.02)
        await router.shutdown()
        return spans

    spans = asyncio.run(run())
    upstream = next(s for s in spans if s.name == "upstream")
    shadows = {s.attributes["strangler.shadow.role"]: s for s in spans if s.name.startswith("shadow ")}
    assert set(shadows) == {"candidate", "primary again"}
    candidate = shadows["candidate"]
    assert candidate.name == "shadow b" and shadows["primary again"].name == "shadow a"
    assert candidate.context.trace_id == upstream.context.trace_id
    assert candidate.parent.span_id == upstream.context.span_id
    assert [link.context.span_id for link in candidate.links] == [upstream.context.span_id]


def test_a_new_trace_sampled_out_records_nothing_and_says_so_upstream(tmp_path, upstreams) -> None:
    config = parse_config(ROUTES.format(a=upstreams["a"].port, b=upstreams["b"].port,
                                        ledger=tmp_path / "l.jsonl").replace(
        'tracing: {exporter: zipkin,', 'tracing: {sample: 0, exporter: zipkin,'))
    r = asyncio.run(_get(Router(config=config), "/echo"))
    assert r.status_code == 200 and r.spans == []
    assert dict(r.json()["headers"])["traceparent"].endswith("-00")
    # A caller's sampled flag is kept whatever the share: its trace is recorded.
    r = asyncio.run(_get(Router(config=config), "/echo",
                         {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}))
    assert len(r.spans) == 3
