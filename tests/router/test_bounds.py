"""Bounds on clients and upstreams (issue 15), over raw sockets, on both HTTP servers.

Each limit is set small in routes.yaml; no test asserts a duration, only that the request
ended and how.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from router.config import ConfigError, parse_config
from tests.router.conftest import RouterProc, eventually
from tests.router.test_server_lean import read_response


class RawUpstream:
    """A loopback HTTP/1.1 upstream that answers each request with its connection's number;
    `/hold` answers only after `release` is set (and sets `arrived` first)."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.arrived = threading.Event()
        self.release = threading.Event()
        self.accepted = 0
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self._serve, args=(conn, self.accepted), daemon=True).start()

    def _serve(self, conn: socket.socket, number: int) -> None:
        with conn, conn.makefile("rb") as f:
            while line := f.readline():
                while f.readline() not in (b"\r\n", b""):
                    pass
                if line.split()[1].startswith(b"/hold"):
                    self.arrived.set()
                    self.release.wait(20)
                body = b"%d" % number
                try:
                    conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%b" % (len(body), body))
                except OSError:
                    return

    def close(self) -> None:
        self.release.set()
        self.listener.close()


@pytest.fixture
def raw_upstream() -> Iterator[RawUpstream]:
    up = RawUpstream()
    try:
        yield up
    finally:
        up.close()


def routes(url: str, *, top: str = "", upstream: str = "", route: str = "") -> str:
    return f"""
ledger: ledger.jsonl
access_log: false
{top}
upstreams:
  a: {{url: "{url}"{upstream}}}
routes:
  - name: all
    match: {{prefix: /}}
    backends: {{a: 100}}
{route}
"""


def connect(router: RouterProc) -> socket.socket:
    return socket.create_connection(("127.0.0.1", router.port), timeout=10)


def ended(sock: socket.socket) -> bool:
    """The router closed the connection (after whatever it still had to send)."""
    sock.settimeout(10)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    except TimeoutError:
        return False
    return True


@pytest.mark.parametrize("head, sent", [
    (b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n", b"ab"),
    (b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", b"5\r\nab"),
], ids=["content-length", "chunked"])
def test_a_stalled_request_body_gets_408_and_frees_both_connections(
        upstreams, start_router, http: str, head: bytes, sent: bytes) -> None:
    router = start_router(routes(upstreams["a"].url, top="client: {body_timeout: 0.3}"), http=http)
    with connect(router) as sock, sock.makefile("rb") as f:
        sock.sendall(head + sent)  # slow POST: announces a body, sends part of it, stalls
        status, headers, body = read_response(f)
        assert status == 408 and b"body_timeout" in body
        assert ended(sock)
    assert eventually(lambda: router.status()["in_flight"] == 0)
    assert httpx.get(f"{router.url}/echo", timeout=10).status_code == 200


def test_a_client_that_stops_reading_is_cut_and_the_upstream_freed(upstreams, start_router, http: str) -> None:
    router = start_router(routes(upstreams["a"].url, top="client: {send_timeout: 0.3}"), http=http)
    with connect(router) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.sendall(b"GET /download?mb=200 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert eventually(lambda: router.status()["in_flight"] == 1)
        # Not reading: the router gives up on this client and lets the upstream go.
        assert eventually(lambda: router.status()["in_flight"] == 0)
        total = 0
        sock.settimeout(10)
        try:
            while chunk := sock.recv(1 << 20):
                total += len(chunk)
        except ConnectionResetError:
            pass
        assert total < 200 << 20  # cut short, and the connection ended
    assert httpx.get(f"{router.url}/echo", timeout=10).status_code == 200


def test_the_route_deadline_caps_retries_and_fallback(upstreams, start_router, http: str) -> None:
    text = f"""
ledger: ledger.jsonl
access_log: false
upstreams:
  a: {{url: "{upstreams['a'].url}", read_timeout: 0.3}}
  b: {{url: "{upstreams['b'].url}"}}
routes:
  - name: all
    match: {{prefix: /}}
    backends: {{a: 100}}
    retries: 2
    fallback: b
    deadline: 0.5
"""
    router = start_router(text, http=http)
    # Without the deadline: three read timeouts on a, then b answers after 2 s.
    r = httpx.get(f"{router.url}/slow?s=2", timeout=20)
    assert r.status_code == 504 and r.json()["error"] == "deadline"
    assert "deadline (0.5s)" in r.json()["detail"]


def test_bodies_over_max_body_bytes_get_413(upstreams, start_router, http: str) -> None:
    router = start_router(routes(upstreams["a"].url, route="    max_body_bytes: 1000"), http=http)
    with connect(router) as sock, sock.makefile("rb") as f:  # refused on the announced length
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n")
        status, headers, body = read_response(f)
        assert status == 413 and b"max_body_bytes" in body and headers["connection"] == "close"
        assert ended(sock)
    with connect(router) as sock, sock.makefile("rb") as f:  # chunked: refused as it streams
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(3):
            sock.sendall(b"258\r\n" + b"z" * 600 + b"\r\n")
        status, headers, body = read_response(f)
        assert status == 413 and b"max_body_bytes" in body
        assert ended(sock)
    ok = httpx.post(f"{router.url}/upload", content=b"y" * 1000, timeout=10)
    assert ok.status_code == 200 and ok.json()["received"] == 1000


def test_a_full_upstream_gets_503_with_retry_after(raw_upstream: RawUpstream, start_router, http: str) -> None:
    router = start_router(routes(raw_upstream.url, upstream=", max_connections: 1, pool_size: 1"), http=http)
    held: list[int] = []
    thread = threading.Thread(target=lambda: held.append(
        httpx.get(f"{router.url}/hold", timeout=20).status_code))
    thread.start()
    try:
        assert raw_upstream.arrived.wait(10)  # the one connection is busy
        r = httpx.get(f"{router.url}/other", timeout=10)
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        assert r.json()["error"] == "upstream_busy"
    finally:
        raw_upstream.release.set()
        thread.join(20)
    assert held == [200]
    assert httpx.get(f"{router.url}/other", timeout=10).status_code == 200


def test_client_connections_beyond_the_maximum_get_503(upstreams, start_router, http: str) -> None:
    router = start_router(routes(upstreams["a"].url, top="client: {max_connections: 2}"), http=http)

    def served() -> socket.socket | None:
        sock = connect(router)
        try:
            sock.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
            if read_response(sock.makefile("rb"))[0] == 200:
                return sock
        except (OSError, AssertionError):
            pass
        sock.close()
        return None

    first = eventually(served)  # the start-up probes' connections may still be closing
    second = eventually(served)
    assert isinstance(first, socket.socket) and isinstance(second, socket.socket)
    with first, second, connect(router) as third, third.makefile("rb") as f:
        status, headers, body = read_response(f)
        assert status == 503 and headers["retry-after"] == "1" and b"max_connections" in body
        assert ended(third)
        first.close()
        again = eventually(served)  # a slot freed: served again
        assert isinstance(again, socket.socket)
        again.close()


def test_pooled_connections_idle_past_idle_timeout_are_not_reused(
        raw_upstream: RawUpstream, start_router, http: str) -> None:
    router = start_router(routes(raw_upstream.url, upstream=", idle_timeout: 0.2"), http=http)
    with httpx.Client(base_url=router.url, timeout=10) as client:
        first = client.get("/n").text
        assert client.get("/n").text == first  # reused while fresh
        time.sleep(0.6)  # past idle_timeout: the upstream may be closing it
        fresh = client.get("/n").text
        assert fresh != first
        assert client.get("/n").text == fresh


@pytest.mark.parametrize("text, key, words", [
    ("upstreams:\n  a: {url: 'http://127.0.0.1:1', pool_size: 8, max_connections: 4}\n"
     "routes: [{name: r, match: {prefix: /}, backends: {a: 100}}]\n",
     "upstreams.a.pool_size", "max_connections"),
    ("trusted_proxies: [10.0.0.1/8]\nupstreams:\n  a: {url: 'http://127.0.0.1:1'}\n"
     "routes: [{name: r, match: {prefix: /}, backends: {a: 100}}]\n",
     "trusted_proxies[0]", "host bits"),
    ("client: {body_timeout: 0}\nupstreams:\n  a: {url: 'http://127.0.0.1:1'}\n"
     "routes: [{name: r, match: {prefix: /}, backends: {a: 100}}]\n",
     "client.body_timeout", "0"),
    ("upstreams:\n  a: {url: 'http://127.0.0.1:1'}\n"
     "routes: [{name: r, match: {prefix: /}, backends: {a: 100}, max_body_bytes: -1}]\n",
     "routes[0].max_body_bytes", "-1"),
])
def test_bad_bounds_are_refused_with_key_and_fix(text: str, key: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text, source="routes.yaml")
    assert info.value.key_path == key and words in str(info.value) and "fix:" in str(info.value)


def test_bounds_defaults() -> None:
    config = parse_config("upstreams:\n  a: {url: 'http://127.0.0.1:1', read_timeout: 10}\n"
                          "  b: {url: 'http://127.0.0.1:2', read_timeout: 20}\n"
                          "routes: [{name: r, match: {prefix: /}, backends: {a: 100}, fallback: b}]\n")
    route = config.route("r")
    assert route.deadline == 22.0  # one attempt's worth of the slowest: connect 2 + read 20
    assert route.max_body_bytes == 100 * 1024 * 1024 and not route.splits
    assert config.upstreams["a"].idle_timeout < 5 and config.upstreams["a"].max_connections == 1024
    assert (config.client.body_timeout, config.client.send_timeout) == (30.0, 30.0)
    assert config.trusted_proxies == () and config.anonymous_cohort is not None
