"""Traces end to end: router → catalog and router → monolith, read back from a real Zipkin.

One Zipkin (devstack), the catalog (SQLite, Starlette + SQLAlchemy instrumentation), the
monolith (PostgreSQL, Django + psycopg2 instrumentation) and the router, every one told to
export to Zipkin by the standard OTEL_* variables. Each request must come back as one trace
whose spans link router SERVER → choose / upstream CLIENT → service SERVER → database span.
Then Zipkin goes down: requests still answer, and the router counts the spans it dropped.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from devstack import ServiceUnavailable, free_port
from devstack.zipkin import ZipkinServer
from tests.conftest import service_missing
from tests.router.conftest import ROOT, eventually, stop, wait_port

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

ROUTES = """
upstreams:
  monolith: {{url: "http://127.0.0.1:{monolith}"}}
  catalog: {{url: "http://127.0.0.1:{catalog}"}}
routes:
  - name: categories
    match: {{prefix: /api/categories/}}
    backends: {{catalog: 100}}
  - name: shop
    match: {{prefix: /}}
    backends: {{monolith: 100}}
access_log: {log}
"""


@pytest.fixture(scope="module")
def zipkin() -> Iterator[ZipkinServer]:
    server = ZipkinServer()
    try:
        server.start()
    except ServiceUnavailable as exc:
        service_missing("Zipkin", exc)
    try:
        yield server
    finally:
        server.stop()


def _otel(zipkin: ZipkinServer, service: str) -> dict[str, str]:
    return {"OTEL_TRACES_EXPORTER": "zipkin", "OTEL_EXPORTER_ZIPKIN_ENDPOINT": zipkin.spans_url,
            "OTEL_SERVICE_NAME": service, "OTEL_BSP_SCHEDULE_DELAY": "100"}


@pytest.fixture(scope="module")
def stack(zipkin: ZipkinServer, pg_server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    tmp = tmp_path_factory.mktemp("traces")
    env = {**os.environ, "STRANGLER_STATE_DIR": str(tmp), "PYTHONPATH": str(ROOT),
           "DATABASE_URL": pg_server.create_database(f"traces_{os.getpid()}"),
           "CATALOG_DATABASE_URL": f"sqlite:///{tmp / 'catalog.sqlite3'}",
           "STRANGLER_ADMIN_TOKEN": "test-admin-token-0123456789"}
    subprocess.run([sys.executable, "-m", "monolith", "migrate", "--noinput"], cwd=ROOT, env=env,
                   check=True, capture_output=True)
    ports = {"monolith": free_port(), "catalog": free_port(), "router": free_port()}
    procs: dict[str, subprocess.Popen[bytes]] = {}
    logs = {name: tmp / f"{name}.log" for name in ports}
    argv = {
        "monolith": [sys.executable, "-m", "monolith", "serve", "--host", "127.0.0.1",
                     "--port", str(ports["monolith"])],
        "catalog": [sys.executable, "-m", "extracted.catalog", "--host", "127.0.0.1",
                    "--port", str(ports["catalog"])],
        "router": [sys.executable, "-m", "router", "--config", str(tmp / "routes.yaml"),
                   "--host", "127.0.0.1", "--port", str(ports["router"])],
    }
    (tmp / "routes.yaml").write_text(ROUTES.format(**ports, log=tmp / "access.log"))
    try:
        for name in ("monolith", "catalog", "router"):
            with open(logs[name], "wb") as out:
                procs[name] = subprocess.Popen(argv[name], cwd=ROOT, stdout=out, stderr=out,
                                               env={**env, **_otel(zipkin, name)})
            wait_port(ports[name], procs[name], timeout=30)
        yield {"url": f"http://127.0.0.1:{ports['router']}", "tmp": tmp, "logs": logs}
    finally:
        for proc in procs.values():
            stop(proc)


def _trace(zipkin: ZipkinServer, trace_id: str, services: set[str], db: bool) -> list[dict]:
    """The trace once every service's spans (and a database span) arrived."""
    def complete() -> list[dict] | None:
        spans = zipkin.trace(trace_id)
        seen = {s.get("localEndpoint", {}).get("serviceName") for s in spans}
        has_db = any("db.system" in s.get("tags", {}) or "db.system.name" in s.get("tags", {})
                     for s in spans)
        return spans if services <= seen and (has_db or not db) else None
    spans = eventually(complete, timeout=20, interval=0.2)
    assert spans, f"trace {trace_id} incomplete in Zipkin: {zipkin.trace(trace_id)}"
    return spans  # type: ignore[return-value]


def _router_span(spans: list[dict]) -> dict:
    return next(s for s in spans if s["localEndpoint"]["serviceName"] == "router"
                and s.get("kind") == "SERVER")


def _check_tree(spans: list[dict], service: str) -> None:
    by_id = {s["id"]: s for s in spans}
    assert len({s["traceId"] for s in spans}) == 1
    roots = [s for s in spans if "parentId" not in s]
    assert len(roots) == 1, roots
    root = roots[0]
    assert root is _router_span(spans)
    children = {s["name"] for s in spans if s.get("parentId") == root["id"]}
    assert {"choose", "upstream"} <= children
    upstream = next(s for s in spans if s["name"] == "upstream")
    assert upstream["kind"] == "CLIENT" and upstream["tags"]["strangler.backend"] == service
    servers = [s for s in spans if s["localEndpoint"]["serviceName"] == service and s.get("kind") == "SERVER"]
    assert len(servers) == 1 and servers[0]["parentId"] == upstream["id"], servers
    dbs = [s for s in spans if any(k.startswith("db.") for k in s.get("tags", {}))]
    assert dbs, [s["name"] for s in spans]
    for span in dbs:  # every statement's span hangs (maybe through handler spans) under it
        node = span
        while node.get("parentId") and node["id"] != servers[0]["id"]:
            node = by_id[node["parentId"]]
        assert node["id"] == servers[0]["id"], span


@pytest.mark.parametrize(("path", "service"), [("/api/categories/", "catalog"),
                                               ("/api/products/", "monolith")])
def test_each_request_is_one_trace_router_to_service_to_database(stack, zipkin, path, service) -> None:
    caller_trace = os.urandom(16).hex()
    with httpx.Client(base_url=stack["url"], timeout=10) as client:
        plain = client.get(path)
        continued = client.get(path, headers={"traceparent": f"00-{caller_trace}-{'ab' * 8}-01"})
    assert plain.status_code == continued.status_code == 200, plain.text
    # A caller's trace is continued: its id, the caller's span as the router span's parent.
    spans = _trace(zipkin, caller_trace, {"router", service}, db=True)
    root = _router_span(spans)
    assert root["parentId"] == "ab" * 8  # the caller's span, not in Zipkin
    _check_tree([{k: v for k, v in s.items() if not (s is root and k == "parentId")}
                 for s in spans], service)
    # Without a caller's trace the router starts one; the access log names it.
    rid = plain.headers["x-request-id"]
    line = eventually(lambda: next((ln for ln in (stack["tmp"] / "access.log").read_text().splitlines()
                                    if rid in ln), None), timeout=5)
    assert line and '"trace_id":' in line, line
    entry = json.loads(line)
    if service == "catalog":  # the service's own log lines name the same trace
        catalog_line = eventually(lambda: next((ln for ln in stack["logs"]["catalog"].read_text().splitlines()
                                                if caller_trace in ln), None), timeout=5)
        assert catalog_line and json.loads(catalog_line)["trace_id"] == caller_trace
    _check_tree(_trace(zipkin, entry["trace_id"], {"router", service}, db=True), service)
    assert entry["span_id"] == _router_span(zipkin.trace(entry["trace_id"]))["id"]


def test_zipkin_down_requests_unaffected_spans_dropped_and_counted(stack, zipkin) -> None:
    status = lambda: httpx.get(f"{stack['url']}/_strangler/status", timeout=10,  # noqa: E731
                               headers={"Authorization": "Bearer test-admin-token-0123456789"}).json()
    before = status()["tracing"]["spans"].get("dropped", 0)
    zipkin.halt()
    try:
        with httpx.Client(base_url=stack["url"], timeout=10) as client:
            started = time.monotonic()
            answers = [client.get("/api/categories/").status_code for _ in range(20)]
            took = time.monotonic() - started
        assert answers == [200] * 20
        assert took < 10, took
        dropped = eventually(lambda: status()["tracing"]["spans"].get("dropped", 0) >= before + 60 and
                             status()["tracing"]["spans"], timeout=15, interval=0.2)
        assert dropped, status()["tracing"]
        metrics = httpx.get(f"{stack['url']}/_strangler/metrics", timeout=10,
                            headers={"Authorization": "Bearer test-admin-token-0123456789"}).text
        assert 'strangler_trace_spans_total{outcome="dropped"}' in metrics
    finally:
        zipkin.resume()
