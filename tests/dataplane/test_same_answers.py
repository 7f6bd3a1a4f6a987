"""Beyond cohorts: the exported nginx and HAProxy pick the route and backend the router
picks for the same requests — matching order, overrides, empty values, the anonymous
cookie, writes to the owner, path normalisation, the identity header — real servers."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from dataplane import model, run
from dataplane.errors import ExportError
from devstack import free_port
from router import balance
from tests.conftest import service_missing
from tests.dataplane.wire import answers, named_upstreams, router_process

OWNERSHIP = """version: 1
groups:
  products:
    owner: catalog
    sides:
      monolith: {stream: fwd, tables: [a]}
      catalog: {stream: rev, tables: [b]}
"""


def routes_yaml(ports: dict[str, int], dead: int) -> str:
    ups = "\n".join(f"  {n}: {{url: http://127.0.0.1:{p}}}" for n, p in ports.items())
    return f"""ledger: ledger.jsonl
access_log: false
ownership: ownership.yaml
upstreams:
{ups}
  dead: {{url: "http://127.0.0.1:{dead}", connect_timeout: 1}}
routes:
  - name: root
    match: {{prefix: /, methods: [GET, HEAD]}}
    backends: {{monolith: 100}}
  - name: products
    match: {{prefix: /api/products}}
    writes: products
    backends: {{monolith: 60, catalog: 40}}
    cohort: {{header: X-User, cookie: sessionid}}
    override: {{header: X-Try, cookie: try, candidate: catalog}}
    header_routes:
      - {{name: testers, header: X-Canary, exact: "yes", to: catalog}}
      - {{name: plan, header: X-Plan, prefix: beta-, to: catalog}}
      - {{name: staff, header: X-Staff, regex: "[a-z]+@shop\\\\.example", to: monolith}}
  - name: beta
    match: {{prefix: /api/products, header: {{name: X-Beta}}, methods: [GET, HEAD]}}
    backends: {{search: 100}}
  - name: special
    match: {{exact: /api/products/special, methods: [GET, HEAD]}}
    backends: {{search: 100}}
  - name: anon
    match: {{prefix: /anon, methods: [GET, HEAD]}}
    backends: {{monolith: 50, catalog: 50}}
  - name: mirrored
    match: {{prefix: /mirrored, methods: [GET, HEAD]}}
    backends: {{monolith: 100}}
    shadow: {{to: search, percent: 100}}
  - name: flaky
    match: {{prefix: /flaky, methods: [GET, HEAD]}}
    backends: {{dead: 100}}
    fallback: monolith
"""


def cases() -> list[tuple[str, dict[str, str], str]]:
    users = [f"u{i}" for i in range(60)]
    out: list[tuple[str, dict[str, str], str]] = [
        ("/api/products/special", {"X-User": "u1"}, "GET"),  # exact beats the prefixes
        ("/api/productsX", {"X-User": "u1"}, "GET"),  # not under /api/products: root
        ("/api/products/1", {"X-User": "u1", "X-Beta": "1"}, "GET"),  # narrowed beats plain
        ("/x/../api/products/special", {}, "GET"),  # dot segments, as the router resolves them
        ("//api//products/special", {}, "GET"),  # double slashes
        ("/api/products/1", {"X-User": "u1", "X-Strangler-Identity": "forged"}, "GET"),
    ]
    for u in users:
        out += [("/api/products/1", {"X-User": u}, "GET"),
                ("/api/products/1", {"X-User": u, "X-Try": "always"}, "GET"),
                ("/api/products/1", {"X-User": u, "X-Try": "never"}, "GET"),
                ("/api/products/1", {"X-User": u, "X-Try": "maybe"}, "GET"),  # ignored
                ("/api/products/1", {"X-User": u, "X-Try": "", "Cookie": "try=always"}, "GET"),
                ("/api/products/1", {"X-User": "", "Cookie": f"sessionid={u}"}, "GET"),
                ("/api/products/1", {"X-User": u}, "POST"),  # writes: the owner, whatever the cohort
                # header routes: before overrides and cohorts, first match first, writes still to the owner
                ("/api/products/1", {"X-User": u, "X-Canary": "yes", "X-Try": "never"}, "GET"),
                ("/api/products/1", {"X-User": u, "X-Canary": "yes!"}, "GET"),
                ("/api/products/1", {"X-User": u, "X-Plan": f"beta-{u}"}, "GET"),
                ("/api/products/1", {"X-User": u, "X-Plan": "alpha-beta-"}, "GET"),
                ("/api/products/1", {"X-User": u, "X-Staff": f"{u}@shop.example"}, "GET"),
                ("/api/products/1", {"X-User": u, "X-Staff": f"{u}@shopXexample"}, "GET"),
                ("/api/products/1", {"X-User": u, "X-Staff": f"{u}@shop.example.org"}, "GET"),
                ("/api/products/1", {"X-User": u, "X-Staff": "ann@shop.example", "X-Canary": "yes"}, "GET"),
                ("/api/products/1", {"X-User": u, "X-Staff": "ann@shop.example"}, "POST"),
                ("/anon/1", {"Cookie": f"strangler_cohort={u}"}, "GET")]
    return out


@pytest.mark.slow
def test_nginx_and_haproxy_answer_like_the_router(tmp_path: Path) -> None:
    for target in ("nginx", "haproxy"):
        try:
            run.binary(target)
        except ExportError as exc:
            service_missing(target, exc)
    requests = cases()
    hits: dict[str, list[bytes]] = {}
    with named_upstreams(("monolith", "catalog", "search"), hits) as ports:
        routes = tmp_path / "routes.yaml"
        (tmp_path / "ownership.yaml").write_text(OWNERSHIP)
        routes.write_text(routes_yaml(ports, dead=free_port()))
        plan = model.load_plan(routes)
        seen = {}
        with router_process(routes, tmp_path / "router.log") as port:
            seen["router"] = answers(port, requests)
            flaky_router = answers(port, [("/flaky", {})])[0]
            anon_router = answers(port, [("/anon/1", {}) for _ in range(20)])
        for target in ("nginx", "haproxy"):
            with run.start(target, plan, port=free_port()) as server:
                seen[target] = answers(server.port, requests)
                anon = answers(server.port, [("/anon/1", {}) for _ in range(20)])
                if target == "nginx":  # HAProxy has no fallback nor mirroring (its limits say so)
                    assert answers(server.port, [("/mirrored/by-nginx", {})])[0][2] == b"monolith"
                    wait_for(lambda: b"GET /mirrored/by-nginx HTTP/1.1" in hits.get("search", []),
                             "nginx's mirror copy of GET /mirrored/by-nginx never reached search")
                    flaky = answers(server.port, [("/flaky", {})])[0]
                    assert (flaky[0], flaky[2]) == (flaky_router[0], flaky_router[2]) == (200, b"monolith")
            # A new anonymous visitor gets a cohort cookie, and its backend follows that key.
            for status, headers, body in anon:
                assert status == 200
                cookie = headers.get(b"set-cookie", b"").decode()
                assert cookie.startswith("strangler_cohort="), (target, headers)
                key = cookie.split(";")[0].split("=", 1)[1]
                assert body.decode() == balance.choose([("monolith", 50), ("catalog", 50)], salt="anon", key=key)
    assert all(h.get(b"set-cookie", b"").startswith(b"strangler_cohort=") for _, h, _ in anon_router)

    router = [(s, b) for s, _, b in seen["router"]]
    assert {s for s, _ in router} == {200}
    assert router[0][1] == b"search" and router[1][1] == b"monolith" and router[2][1] == b"search"
    assert router[3][1] == router[4][1] == b"search"
    assert seen["router"][5][1][b"x-saw-identity"] == b"no"
    for target in ("nginx", "haproxy"):
        mine = [(s, b) for s, _, b in seen[target]]
        differ = [(req, r, m) for req, r, m in zip(requests, router, mine, strict=True) if r != m]
        assert not differ, f"{target} answered {len(differ)} requests unlike the router, e.g. {differ[:4]}"
        assert seen[target][5][1][b"x-saw-identity"] == b"no", f"{target} passed a client's identity header on"


def wait_for(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)
