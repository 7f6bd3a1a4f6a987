"""Replays only for idempotent requests: retries, stale pooled connections and the fallback.

The upstream here is a raw socket server that reads every request it is sent (so it could
have run it) and then, on a reused connection, closes without answering — what a monolith
does when it dies mid-request or closes a keep-alive connection as the request arrives.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator

import pytest

from devstack import free_port
from tests.router.conftest import raw_request


class DyingUpstream:
    """Answers the first request of each connection (keep-alive); reads the next one, then closes."""

    def __init__(self) -> None:
        self.port = free_port()
        self.seen: list[str] = []  # "METHOD /path" of every request that arrived
        self.sock = socket.create_server(("127.0.0.1", self.port))
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._connection, args=(conn,), daemon=True).start()

    def _connection(self, conn: socket.socket) -> None:
        with conn:
            buffer = b""
            answered = 0
            while True:
                while b"\r\n\r\n" not in buffer:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buffer += data
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                method, path = head.split(b" ")[:2]
                self.seen.append(f"{method.decode()} {path.decode()}")
                if answered:
                    return  # it arrived (and may have run); the answer never leaves
                answered += 1
                body = json.dumps({"upstream": "dying", "method": method.decode()}).encode()
                conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                             b"content-length: %d\r\n\r\n%b" % (len(body), body))

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def dying() -> Iterator[DyingUpstream]:
    up = DyingUpstream()
    try:
        yield up
    finally:
        up.close()


def routes(dying: DyingUpstream, *, fallback_to: str | None = None, retry: str = "",
           first: str | None = None) -> str:
    fallback = f"\n    fallback: {fallback_to}" if fallback_to else ""
    return f"""
ledger: ledger.jsonl
access_log: false
upstreams:
  dying: {{url: "{dying.url}", read_timeout: 5}}
  down: {{url: "http://127.0.0.1:{free_port()}", connect_timeout: 0.5}}
  safe: {{url: "{dying.url}"}}
routes:
  - name: all
    match: {{prefix: /}}
    backends: {{{first or 'dying'}: 100}}{fallback}
    {retry}
"""


def send(port: int, method: str, path: str) -> tuple[int, dict]:
    answer = raw_request(port, f"{method} {path} HTTP/1.1\r\nHost: shop\r\nContent-Length: 0\r\n\r\n".encode())
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), json.loads(body or b"{}")


@pytest.mark.parametrize("method", ["POST", "PATCH", "DELETE", "PUT"])
def test_a_write_on_a_stale_connection_is_502_and_never_replayed(dying, start_router, http, method) -> None:
    router = start_router(routes(dying), http=http)
    assert send(router.port, "GET", "/warm")[0] == 200  # leaves a pooled connection behind
    status, body = send(router.port, method, "/api/orders/7/cancel/")
    assert status == 502, body
    assert body["error"] == "upstream_not_replayed"
    assert method in body["detail"] and "not sent again" in body["detail"]
    assert dying.seen.count(f"{method} /api/orders/7/cancel/") == 1  # ran at most once


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS"])
def test_a_safe_request_on_a_stale_connection_is_replayed_once(dying, start_router, http, method) -> None:
    router = start_router(routes(dying), http=http)
    assert send(router.port, "GET", "/warm")[0] == 200
    answer = raw_request(router.port, f"{method} /again HTTP/1.1\r\nHost: shop\r\n\r\n".encode(), timeout=2)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert dying.seen.count(f"{method} /again") == 2


def test_put_is_replayed_where_the_route_opts_in(dying, start_router, http) -> None:
    router = start_router(routes(dying, retry="retry: {idempotent: [PUT]}"), http=http)
    assert send(router.port, "GET", "/warm")[0] == 200
    assert send(router.port, "PUT", "/api/cart/1")[0] == 200
    assert dying.seen.count("PUT /api/cart/1") == 2
    assert send(router.port, "GET", "/warm")[0] == 200
    assert send(router.port, "DELETE", "/api/cart/1")[0] == 502  # not opted in
    assert dying.seen.count("DELETE /api/cart/1") == 1


def test_only_idempotent_requests_fall_back(dying, start_router, http) -> None:
    router = start_router(routes(dying, fallback_to="safe", first="down"), http=http)
    assert send(router.port, "GET", "/x") == (200, {"upstream": "dying", "method": "GET"})
    for method in ("POST", "PATCH", "PUT", "DELETE"):
        status, body = send(router.port, method, "/api/orders/7/cancel/")
        assert status == 502 and body["error"] == "upstream_connect", (method, body)
    assert not any(seen.endswith("/cancel/") for seen in dying.seen)


def test_an_opted_in_delete_falls_back(dying, start_router, http) -> None:
    router = start_router(routes(dying, fallback_to="safe", first="down",
                                 retry="retry: {idempotent: [DELETE]}"), http=http)
    assert send(router.port, "DELETE", "/api/cart/1") == (200, {"upstream": "dying", "method": "DELETE"})
