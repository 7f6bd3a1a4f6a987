"""Forwarding through a real router process to real upstreams on loopback."""

from __future__ import annotations

import json
import time
from collections import Counter

import httpx
import pytest

from devstack import free_port
from tests.router.conftest import Upstream, eventually, raw_request


def config(ups: dict, extra_routes: str = "", upstream_extra: str = "") -> str:
    return f"""
ledger: ledger.jsonl
access_log: access.log
upstreams:
  a: {{url: "{ups['a'].url}", read_timeout: 0.5}}
  b: {{url: "{ups['b'].url}"}}
{upstream_extra}
routes:
  - name: split
    match: {{prefix: /split}}
    backends: {{a: 70, b: 30}}
    cohort: {{header: X-User}}
    override: {{header: X-Try-B, cookie: try_b, candidate: b}}
{extra_routes}
  - name: default
    match: {{prefix: /}}
    backends: {{a: 100}}
"""


@pytest.mark.slow
def test_weights_and_sticky_cohorts_over_thousands_of_requests(upstreams, start_router) -> None:
    router = start_router(config(upstreams))
    seen: dict[str, str] = {}
    counts: Counter[str] = Counter()
    with router.client() as client:
        for i in range(1500):
            user = f"user-{i % 500}"
            r = client.get("/split/x", headers={"X-User": user})
            assert r.status_code == 200
            backend = r.headers["x-strangler-backend"]
            assert r.json()["upstream"] == backend
            assert seen.setdefault(user, backend) == backend, "a user flipped backends"
            counts[backend] += 1
    share_b = counts["b"] / 1500
    assert 0.22 < share_b < 0.38, counts  # 30% of 500 users, each seen 3 times


def test_overrides_by_header_and_cookie(upstreams, start_router) -> None:
    router = start_router(config(upstreams))
    with router.client() as client:
        users = [f"u{i}" for i in range(40)]
        assert {client.get("/split", headers={"X-User": u, "X-Try-B": "always"}).headers["x-strangler-backend"]
                for u in users} == {"b"}
        assert {client.get("/split", headers={"X-User": u, "X-Try-B": "never"}).headers["x-strangler-backend"]
                for u in users} == {"a"}
        assert {client.get("/split", headers={"X-User": u, "Cookie": "try_b=always"}).headers["x-strangler-backend"]
                for u in users} == {"b"}
        # An empty override header counts as absent (as on nginx and HAProxy): the cookie decides.
        assert {client.get("/split", headers={"X-User": u, "X-Try-B": "", "Cookie": "try_b=always"})
                .headers["x-strangler-backend"] for u in users} == {"b"}


def test_an_empty_cohort_header_counts_as_absent(upstreams, start_router) -> None:
    # Not one shared cohort for every client sending `X-User:` empty: each is an anonymous
    # visitor and gets a cohort cookie of its own.
    router = start_router(config(upstreams))
    r = httpx.get(f"{router.url}/split/x", headers={"X-User": ""})
    assert r.status_code == 200
    assert "strangler_cohort=" in r.headers.get("set-cookie", ""), r.headers


def test_headers_hop_by_hop_forwarded_and_trace(upstreams, start_router) -> None:
    router = start_router(config(upstreams))
    trace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    r = httpx.get(f"{router.url}/echo?x=1", headers={
        "Connection": "keep-alive, X-Secret-Hop", "X-Secret-Hop": "1", "Keep-Alive": "timeout=5",
        "X-Forwarded-For": "10.0.0.9", "X-Request-ID": "req-123", "traceparent": trace,
        "X-Strangler-Identity": "forged.value", "X-Kept": "yes"})
    assert r.status_code == 200
    sent = {k: v for k, v in r.json()["headers"]}
    assert "x-secret-hop" not in sent and "keep-alive" not in sent
    assert sent["x-kept"] == "yes"
    assert sent["x-forwarded-for"] == "127.0.0.1"  # a spoofed chain from an untrusted client is dropped
    assert sent["x-forwarded-proto"] == "http"
    assert sent["x-forwarded-host"] == f"127.0.0.1:{router.port}"
    assert sent["host"] == f"127.0.0.1:{upstreams['a'].port}"
    assert sent["x-request-id"] == "req-123" and r.headers["x-request-id"] == "req-123"
    assert "x-strangler-identity" not in sent
    tp = sent["traceparent"].split("-")
    assert tp[1] == "0af7651916cd43dd8448eb211c80319c" and tp[2] != "b7ad6b7169203331"
    assert r.json()["query"] == "x=1"
    fresh = httpx.get(f"{router.url}/echo").json()
    started = dict(fresh["headers"])["traceparent"].split("-")
    assert len(started[1]) == 32 and len(started[2]) == 16
    # the JSON access log has the request
    log_file = router.config.parent / "access.log"
    eventually(lambda: log_file.exists() and "req-123" in log_file.read_text())
    log = log_file.read_text()
    assert '"request_id":"req-123"' in log and '"route":"default"' in log and '"status":200' in log


def test_path_normalisation_is_what_the_upstream_sees(upstreams, start_router) -> None:
    router = start_router(config(upstreams))
    r = raw_request(router.port, b"GET /split/../echo//a/./b/%7Ez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert b" 200 " in r.split(b"\r\n")[0]
    assert b'"path": "/echo/a/b/~z"' in r and b"x-strangler-backend: a" in r.lower()
    for bad in (b"/split%2F..%2Fadmin", b"/a/..%2fsplit", b"/a%5csplit", b"/%zz"):
        r = raw_request(router.port, b"GET " + bad + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert r.startswith(b"HTTP/1.1 400"), (bad, r[:200])


def test_framing_attacks_and_oversized_headers_are_refused(upstreams, start_router, http) -> None:
    router = start_router(config(upstreams), http=http)
    both = (b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
    assert raw_request(router.port, both).startswith(b"HTTP/1.1 400")
    two_lengths = b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde"
    assert raw_request(router.port, two_lengths).startswith(b"HTTP/1.1 400")
    odd_te = b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"
    assert raw_request(router.port, odd_te).startswith(b"HTTP/1.1 400")
    huge = b"GET /echo HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 40000 + b"\r\n\r\n"
    answer = raw_request(router.port, huge)
    assert answer.startswith((b"HTTP/1.1 431", b"HTTP/1.1 400")), answer[:100]
    # still serving
    assert httpx.get(f"{router.url}/echo").status_code == 200


@pytest.mark.slow
def test_streams_large_bodies_both_ways_in_bounded_memory(upstreams, start_router, http) -> None:
    router = start_router(config(upstreams), http=http)
    base = router.rss_kb()
    peak = base
    size = 0
    with httpx.stream("GET", f"{router.url}/download?mb=200", timeout=60) as r:
        assert r.status_code == 200
        for i, chunk in enumerate(r.iter_bytes(1 << 20)):
            size += len(chunk)
            if i % 16 == 0:
                peak = max(peak, router.rss_kb())
    assert size == 200 * 1024 * 1024

    def body():  # type: ignore[no-untyped-def]
        nonlocal peak
        block = b"y" * (1 << 20)
        for i in range(100):
            if i % 16 == 0:
                peak = max(peak, router.rss_kb())
            yield block
    r = httpx.post(f"{router.url}/upload", content=body(), timeout=60)  # chunked upload
    assert r.status_code == 200 and r.json()["received"] == 100 * 1024 * 1024
    # 300 MB went through; the router grew by far less than one body.
    assert peak - base < 40_000, (base, peak)


def test_slow_upstream_gives_504_with_a_json_body(upstreams, start_router) -> None:
    router = start_router(config(upstreams))
    r = httpx.get(f"{router.url}/slow?s=3", timeout=10)
    assert r.status_code == 504
    body = r.json()
    assert body["upstream"] == "a" and body["request_id"] == r.headers["x-request-id"]
    assert body["error"] == "upstream_timeout"
    assert httpx.get(f"{router.url}/echo").status_code == 200


def test_dead_upstream_breaker_opens_fallback_serves_half_open_recovers(upstreams, start_router) -> None:
    dead = Upstream("c", free_port())
    routes = """
  - name: moved
    match: {prefix: /moved}
    backends: {c: 100}
    fallback: a
"""
    ups = f'  c: {{url: "{dead.url}", breaker: {{failures: 3, open_for: 1}}}}'
    router = start_router(config(upstreams, routes, ups))
    try:
        with router.client() as client:
            for _ in range(5):
                r = client.get("/moved/x")
                assert r.status_code == 200 and r.headers["x-strangler-backend"] == "a"
            r = client.post("/moved/x", content=b"{}")  # not idempotent: no fallback
            assert r.status_code in (502, 503) and r.json()["upstream"] == "c"
            status = router.status()
            assert status["breakers"]["c"]["state"] == "open"
            assert status["routes"]["moved"]["backends"]["c"]["breaker"] == "open"
            moved = status["routes"]["moved"]["backends"]
            assert moved["c"]["errors"].get("connect", 0) == 3
            assert moved["a"]["requests"] == 5
            dead.start()
            time.sleep(1.1)
            r = client.get("/moved/x")  # the half-open probe goes to c and succeeds
            assert r.headers["x-strangler-backend"] == "c"
            assert router.status()["breakers"]["c"]["state"] == "closed"
            assert client.get("/moved/y").headers["x-strangler-backend"] == "c"
    finally:
        dead.stop()


def test_connect_failure_without_fallback_is_502(upstreams, start_router) -> None:
    port = free_port()
    routes = """
  - name: nowhere
    match: {prefix: /nowhere}
    backends: {c: 100}
    retries: 2
"""
    router = start_router(config(upstreams, routes, f'  c: {{url: "http://127.0.0.1:{port}"}}'))
    r = httpx.get(f"{router.url}/nowhere")
    assert r.status_code == 502
    assert r.json()["error"] == "upstream_connect" and r.json()["upstream"] == "c"
    errors = router.status()["routes"]["nowhere"]["backends"]["c"]["errors"]
    assert errors == {"connect": 3}  # one try and two retries
    r = httpx.post(f"{router.url}/nowhere", content=b"x")
    assert r.status_code == 502
    errors = router.status()["routes"]["nowhere"]["backends"]["c"]["errors"]
    assert errors == {"connect": 4}  # not idempotent: no retry


def test_pooled_connections_to_a_restarted_upstream_are_retried_fresh(upstreams, start_router) -> None:
    spare = Upstream("c", free_port()).start()
    routes = """
  - name: restarted
    match: {prefix: /restarted}
    backends: {c: 100}
"""
    try:
        router = start_router(config(upstreams, routes, f'  c: {{url: "{spare.url}"}}'))
        with router.client() as client:
            for _ in range(3):
                assert client.get("/restarted").status_code == 200
            spare.stop()
            spare.start()  # every pooled connection is now dead
            for _ in range(3):
                r = client.get("/restarted")
                assert r.status_code == 200 and r.json()["upstream"] == "c"
    finally:
        spare.stop()


@pytest.mark.parametrize("method", ["HEAD", "DELETE", "PUT", "PATCH"])
def test_methods_and_keepalive_reuse(upstreams, start_router, method: str) -> None:
    router = start_router(config(upstreams))
    with router.client() as client:
        for _ in range(5):
            r = client.request(method, "/echo", content=b"" if method in ("HEAD", "DELETE") else b"abc")
            assert r.status_code == 200
            if method != "HEAD":
                assert r.json()["method"] == method


def test_an_upstream_answering_before_reading_the_body_does_not_poison_the_pool(upstreams, start_router) -> None:
    router = start_router(config(upstreams))
    with router.client() as client:
        for _ in range(5):
            # /echo answers without reading the request body
            assert client.post("/echo", content=b"x" * 100).status_code == 200
            assert client.get("/echo").status_code == 200


def test_a_client_leaving_mid_download_stops_the_upstream_transfer(upstreams, start_router, http) -> None:
    router = start_router(config(upstreams), http=http)
    with httpx.stream("GET", f"{router.url}/download?mb=500", timeout=30) as r:
        next(r.iter_bytes(1 << 20))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        errors = router.status()["routes"]["default"]["backends"]["a"]["errors"]
        if errors.get("client_gone"):
            break
        time.sleep(0.1)
    assert errors == {"client_gone": 1}
    assert httpx.get(f"{router.url}/echo").status_code == 200


def test_close_delimited_and_interim_responses_are_relayed_whole(upstreams, start_router) -> None:
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    port = server.getsockname()[1]
    answers = [b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"
               b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n" + b"c" * 100_000,
               b"HTTP/1.0 200 OK\r\n\r\nold-style body"]

    def serve() -> None:
        for answer in answers:
            conn, _ = server.accept()
            conn.recv(65536)
            conn.sendall(answer)
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    routes = """
  - name: raw
    match: {prefix: /raw}
    backends: {raw: 100}
"""
    try:
        router = start_router(config(upstreams, routes, f'  raw: {{url: "http://127.0.0.1:{port}"}}'))
        r = httpx.get(f"{router.url}/raw/1")
        assert r.status_code == 200 and r.content == b"c" * 100_000
        r = httpx.get(f"{router.url}/raw/2")
        assert r.status_code == 200 and r.content == b"old-style body"
    finally:
        thread.join(5)
        server.close()


def _answer(port: int, data: bytes) -> tuple[int, dict]:
    head, _, body = raw_request(port, data).partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), json.loads(body) if body.startswith(b"{") else {}


def test_a_fragment_is_dropped_before_matching(upstreams, start_router, http) -> None:
    products = """
  - name: products
    match: {prefix: /api/products}
    backends: {b: 100}
"""
    router = start_router(config(upstreams, products), http=http)
    for target, query in ((b"/api/products#frag", ""), (b"/api/products?page=2#frag", "page=2"),
                          (b"/api/products/#/x", "")):
        status, body = _answer(router.port, b"GET " + target + b" HTTP/1.1\r\nHost: shop\r\n\r\n")
        assert status == 200 and body["upstream"] == "b", (target, body)  # the route the upstream's path names
        assert "#" not in body["raw_path"] and body["query"] == query, body


def test_missing_or_duplicate_host_is_400(upstreams, start_router, http) -> None:
    router = start_router(config(upstreams), http=http)
    for request in (b"GET /echo HTTP/1.1\r\n\r\n",
                    b"GET /echo HTTP/1.1\r\nHost: shop\r\nHost: evil\r\n\r\n",
                    b"GET /echo HTTP/1.1\r\nHost: shop\r\nHost: shop\r\n\r\n",
                    b"GET /_strangler/healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"):
        status, body = _answer(router.port, request)
        assert status == 400 and "Host" in body["detail"], (request, body)
    assert _answer(router.port, b"GET /echo HTTP/1.0\r\n\r\n")[0] == 200  # HTTP/1.0 needs none
    assert _answer(router.port, b"GET /echo HTTP/1.1\r\nHost: shop\r\n\r\n")[0] == 200


def test_a_100_kb_url_is_414(upstreams, start_router, http) -> None:
    router = start_router(config(upstreams), http=http)
    answer = raw_request(router.port, b"GET /echo?q=" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: shop\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 414"), answer[:200]
    assert httpx.get(f"{router.url}/echo").status_code == 200
