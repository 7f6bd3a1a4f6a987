"""WebSocket passthrough (`router.tunnel`) on both HTTP servers, with a real WebSocket client
(`websockets.sync.client`) and real WebSocket upstreams (`websockets.sync.server`) on loopback.
"""

from __future__ import annotations

import json
import signal
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.http11 import Request, Response
from websockets.sync.client import connect
from websockets.sync.server import Server, ServerConnection, serve

from devstack import free_port
from router.config import parse_config
from router.errors import ConfigError
from tests.router.conftest import AUTH, eventually, raw_request


@dataclass
class WsUpstream:
    """An echo server: `who` answers its name, `server-close` makes it close with 4001."""

    name: str
    seen: list[tuple[str, dict[str, str]]] = field(default_factory=list)  # (path, headers)
    server: Server | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.socket.getsockname()[1]}"

    def start(self) -> WsUpstream:
        self.server = serve(self._handle, "127.0.0.1", 0, process_request=self._check)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def _check(self, conn: ServerConnection, request: Request) -> Response | None:
        self.seen.append((request.path, {k.lower(): v for k, v in request.headers.raw_items()}))
        # Refuses only a real upgrade: a request whose Upgrade was dropped gets 426 instead.
        if request.path.endswith("/refuse") and request.headers.get("Upgrade", "").lower() == "websocket":
            return conn.respond(403, "no websocket for you\n")
        return None

    def _handle(self, ws: ServerConnection) -> None:
        for message in ws:
            if message == "who":
                ws.send(self.name)
            elif message == "server-close":
                ws.close(4001, "server done")
                return
            else:
                ws.send(message)

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()


@pytest.fixture(scope="module")
def ws_ups() -> Iterator[dict[str, WsUpstream]]:
    ups = {name: WsUpstream(name).start() for name in ("wsa", "wsb", "mirror")}
    yield ups
    for up in ups.values():
        up.stop()


def routes(ups: dict[str, WsUpstream], down_port: int) -> str:
    return f"""
ledger: ledger.jsonl
access_log: false
websocket: {{idle_timeout: 60}}
upstreams:
  wsa: {{url: "{ups['wsa'].url}"}}
  wsb: {{url: "{ups['wsb'].url}"}}
  mirror: {{url: "{ups['mirror'].url}"}}
  down: {{url: "http://127.0.0.1:{down_port}", connect_timeout: 0.5}}
routes:
  - name: ws
    match: {{prefix: /ws}}
    backends: {{wsa: 100, wsb: 0}}
    override: {{header: x-canary}}
    shadow: {{to: mirror, percent: 100}}
  - name: quiet
    match: {{prefix: /quiet}}
    backends: {{wsa: 100}}
    websocket: {{idle_timeout: 0.3}}
  - name: down
    match: {{prefix: /down}}
    backends: {{down: 100}}
  - name: rescued
    match: {{prefix: /rescued}}
    backends: {{down: 100}}
    fallback: wsb
"""


@pytest.fixture
def router(http, start_router, ws_ups):  # type: ignore[no-untyped-def]
    for up in ws_ups.values():
        up.seen.clear()
    return start_router(routes(ws_ups, free_port()), http=http)


def ws_url(router, path: str) -> str:  # type: ignore[no-untyped-def]
    return f"ws://127.0.0.1:{router.port}{path}"


def test_echo_text_and_binary_then_client_close(router, ws_ups) -> None:  # type: ignore[no-untyped-def]
    big = bytes(range(256)) * 2048  # 512 KiB: back-pressure both ways
    with connect(ws_url(router, "/ws/../ws/chat"), open_timeout=10, max_size=None) as ws:
        assert ws.response.status_code == 101
        assert ws.response.headers["x-strangler-backend"] == "wsa"
        ws.send("hello")
        assert ws.recv(timeout=10) == "hello"
        ws.send(b"\x00\xffbinary")
        assert ws.recv(timeout=10) == b"\x00\xffbinary"
        ws.send(big)
        assert ws.recv(timeout=10) == big
        ws.send("who")
        assert ws.recv(timeout=10) == "wsa"
    assert ws.close_code == 1000  # the client's close went through and was answered
    path, headers = ws_ups["wsa"].seen[-1]
    assert path == "/ws/chat"  # normalised, as for any request
    assert headers["x-forwarded-for"] == "127.0.0.1" and "x-request-id" in headers
    status = router.status()["routes"]["ws"]["backends"]["wsa"]
    assert status["requests"] == 1 and status["statuses"] == {"1xx": 1}  # counted once
    assert ws_ups["mirror"].seen == []  # an Upgrade is never mirrored


def test_close_from_the_upstream(router) -> None:  # type: ignore[no-untyped-def]
    with connect(ws_url(router, "/ws/chat"), open_timeout=10) as ws:
        ws.send("server-close")
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=10)
    assert ws.close_code == 4001 and ws.close_reason == "server done"


def test_backend_choice_applies(router) -> None:  # type: ignore[no-untyped-def]
    with connect(ws_url(router, "/ws/chat"), additional_headers={"x-canary": "always"},
                 open_timeout=10) as ws:
        ws.send("who")
        assert ws.recv(timeout=10) == "wsb"


def test_refused_upgrade_is_relayed(router) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidStatus) as caught:
        connect(ws_url(router, "/ws/refuse"), open_timeout=10)
    assert caught.value.response.status_code == 403
    assert caught.value.response.body == b"no websocket for you\n"


def test_upstream_down_502_and_fallback(router) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidStatus) as caught:
        connect(ws_url(router, "/down/chat"), open_timeout=10)
    assert caught.value.response.status_code == 502
    assert json.loads(caught.value.response.body)["error"] == "upstream_connect"
    # An idempotent handshake goes to the fallback like any GET.
    with connect(ws_url(router, "/rescued/chat"), open_timeout=10) as ws:
        ws.send("who")
        assert ws.recv(timeout=10) == "wsb"


@pytest.mark.parametrize("path", ["/_strangler/status", "/ws/../_strangler/status"])
def test_upgrade_to_admin_refused(router, ws_ups, path: str) -> None:  # type: ignore[no-untyped-def]
    head = (f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
            f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            f"Authorization: {AUTH['Authorization']}\r\n\r\n").encode()
    answer = raw_request(router.port, head)
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
    assert b"does not switch protocols" in answer
    assert all("_strangler" not in p for p, _ in ws_ups["wsa"].seen)


def test_idle_tunnel_is_closed(router) -> None:  # type: ignore[no-untyped-def]
    with connect(ws_url(router, "/quiet/chat"), open_timeout=10) as ws:
        ws.send("ping")
        assert ws.recv(timeout=10) == "ping"
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=20)  # nothing moves: the router closes after idle_timeout


def test_client_dropping_the_socket_ends_the_tunnel(router) -> None:  # type: ignore[no-untyped-def]
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    sock = socket.create_connection(("127.0.0.1", router.port), timeout=10)
    sock.sendall(f"GET /ws/chat HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                 f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\r\n".encode())
    assert sock.recv(65536).startswith(b"HTTP/1.1 101 ")
    sock.close()  # no close frame: the router must still free both sides
    assert eventually(lambda: router.status()["in_flight"] == 0)


def test_stopping_the_router_closes_tunnels(router) -> None:  # type: ignore[no-untyped-def]
    with connect(ws_url(router, "/ws/chat"), open_timeout=10) as ws:
        ws.send("ping")
        assert ws.recv(timeout=10) == "ping"
        router.proc.send_signal(signal.SIGTERM)
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=20)
    # Ended well before the 60 s idle timeout (uvicorn exits by re-raising the SIGTERM).
    assert router.proc.wait(20) in (0, -signal.SIGTERM)


def test_websocket_config() -> None:
    from router.config import WebSocket

    base = """
upstreams: {a: {url: "http://127.0.0.1:9"}}
websocket: {idle_timeout: 30}
routes:
  - {name: one, match: {prefix: /one}, backends: {a: 100}}
  - {name: two, match: {prefix: /two}, backends: {a: 100}, websocket: {idle_timeout: 5}}
  - {name: plain, match: {prefix: /plain}, backends: {a: 100}, websocket: {enabled: false}}
"""
    config = parse_config(base)
    assert config.route("one").websocket == WebSocket(idle_timeout=30)
    assert config.route("two").websocket == WebSocket(idle_timeout=5)
    assert config.route("plain").websocket is None
    with pytest.raises(ConfigError, match=r"routes\[1\]\.websocket\.idle_timeout"):
        parse_config(base.replace("idle_timeout: 5", "idle_timeout: 0"))
    with pytest.raises(ConfigError, match=r"websocket"):
        parse_config(base.replace("idle_timeout: 30", "idle: 30"))
