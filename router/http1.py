"""The HTTP/1.1 connection of the lean front server: httptools parsing → ASGI `receive`/`send`.

Place in the flow: `router.server_lean` accepts sockets; each gets an `HttpConnection`.
Bytes from the client go into httptools; each parsed request becomes one `Exchange` whose
`receive`/`send` the router's ASGI app drives. Why not uvicorn: its per-request ASGI
machinery cost ~60 µs on this class of machine (MEASUREMENTS.md); here a request is a small
scope dict with the raw header list, one object, and no Task of its own (one runner Task per
connection serves request after request).

HTTP rules kept here: keep-alive (HTTP/1.0 only when asked), pipelined requests answered one
at a time in order, `Connection: close` honoured both ways, request bodies (Content-Length
or chunked) streamed to the app with reading paused while it is not consuming, responses
framed by Content-Length, chunked, or close, writes paused while the socket buffer is high,
oversized heads refused with 431 and malformed or ambiguous framing with 400 (then close),
a client that goes away reported as `http.disconnect`, an Upgrade request offered the
`strangler.upgrade` extension (`handover`: the socket then carries a `router.tunnel`).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
import traceback
from collections import deque
from time import monotonic
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import httptools

from router.errors import ClientGone, RouterError
from router.http1_exchange import Exchange, busy_bytes, error_bytes
from router.tunnel import EXTENSION

if TYPE_CHECKING:
    from router.tunnel import Tunnel
    from router.types import Listener

MAX_HEAD_BYTES = 64 * 1024  # request line + headers; beyond that 431 (the app also checks its own limit)
MAX_HEADERS = 100
READ_HIGH_WATER = 64 * 1024  # request body bytes buffered before reading pauses
ASGI = {"version": "3.0", "spec_version": "2.3"}


class Refused(Exception):
    """Raised inside a parser callback to stop parsing; `status` and `detail` say why."""

    def __init__(self, status: int, detail: str) -> None:
        self.status, self.detail = status, detail
        super().__init__(detail)


class HttpConnection(asyncio.Protocol):
    """One client connection: parses requests, runs them one at a time, in order."""

    def __init__(self, server: Listener) -> None:
        self.server = server
        self.loop = server.loop
        self.app = server.app
        self.scheme = server.scheme  # "https" when the listener terminates TLS
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.client: tuple[str, int] | None = None
        self.local: tuple[str, int] | None = None
        self.current: Exchange | None = None  # the request being answered
        self.parsing: Exchange | None = None  # the request whose body is arriving
        self.queue: deque[Exchange] = deque()  # pipelined requests waiting their turn
        self.runner: asyncio.Task[None] | None = None
        self.waiters: list[asyncio.Future[None]] = []  # runner idle, or receive() waiting
        self.drain_waiter: asyncio.Future[None] | None = None
        self.reading_paused = False
        self.write_paused = False
        self.closed = False
        self.broken: bytes | None = None  # an error answer waiting for the current request to end
        self.tunnel: Tunnel | None = None  # after a 101: every read goes to the upstream as is
        self.after_upgrade = b""  # bytes the client sent past an Upgrade request's head
        self.last_active = self.head_started = monotonic()
        self._reset_head()

    def _reset_head(self) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_bytes = 0
        self.in_head = False
        self.expect = False

    # --- asyncio.Protocol ---------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peer = transport.get_extra_info("peername")
        self.client = (peer[0], peer[1]) if isinstance(peer, tuple) else None
        here = transport.get_extra_info("sockname")
        self.local = (here[0], here[1]) if isinstance(here, tuple) else None
        if len(self.server.connections) >= self.server.max_connections:
            self._close_with(busy_bytes(f"the router holds its {self.server.max_connections} "
                                        "client connections (client.max_connections)"))
            return
        self.server.connections.add(self)

    def data_received(self, data: bytes) -> None:
        self.last_active = monotonic()
        if self.broken is not None:
            if self.tunnel is not None:
                self.tunnel.from_client(data)
            return  # refusing or switched: nothing more is parsed on this connection
        # A head spread over several reads is counted read by read (within one read, the
        # callbacks count it), so a client cannot grow the parser's buffer without bound.
        continued = self.in_head
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            # What follows the head is not HTTP/1.1 any more: the app either switches
            # protocols (`handover`) or answers as plain HTTP, and then the connection closes.
            self.after_upgrade = data[exc.args[0]:] if exc.args else b""
            if self.parsing is not None:  # a body that will never be parsed
                self.parsing.gone = True
                self.wake()
            self.broken = b""
            self.pause_reading()
            if self.current is None:
                self._close_with(b"")
            return
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, Refused):
                return self.refuse(cause.status, cause.detail)
            return self.refuse(400, "malformed request")
        except httptools.HttpParserError as exc:
            return self.refuse(400, f"malformed request: {exc}")
        if self.in_head:
            if continued:
                self.head_bytes += len(data)
            if self.head_bytes > MAX_HEAD_BYTES:
                self.refuse(431, f"request head exceeds {MAX_HEAD_BYTES} bytes")

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.tunnel is not None:
            self.tunnel.client_closed()
        self.server.connections.discard(self)
        for ex in (self.current, self.parsing, *self.queue):
            if ex is not None:
                ex.gone = True
        self.queue.clear()
        self.wake()
        if self.drain_waiter is not None and not self.drain_waiter.done():
            self.drain_waiter.set_result(None)

    def pause_writing(self) -> None:
        self.write_paused = True
        if self.tunnel is not None:
            self.tunnel.client_pause_writing()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.tunnel is not None:
            self.tunnel.client_resume_writing()
        if self.drain_waiter is not None and not self.drain_waiter.done():
            self.drain_waiter.set_result(None)

    # --- httptools callbacks --------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._reset_head()
        self.in_head = True
        self.head_started = self.last_active  # set by data_received just now

    def on_url(self, url: bytes) -> None:
        self.url += url
        self.head_bytes += len(url)
        if self.head_bytes > MAX_HEAD_BYTES:
            raise Refused(414, f"request target exceeds {MAX_HEAD_BYTES} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        headers = self.headers
        if len(headers) >= MAX_HEADERS:
            raise Refused(431, f"more than {MAX_HEADERS} request headers")
        self.head_bytes += len(name) + len(value) + 4
        if self.head_bytes > MAX_HEAD_BYTES:
            raise Refused(431, f"request head exceeds {MAX_HEAD_BYTES} bytes")
        name = name.lower()
        if name == b"expect" and value.lower() == b"100-continue":
            self.expect = True
        headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.in_head = False
        parser = self.parser
        url = self.url
        if b"#" in url:  # a fragment never goes upstream (nor into the query string)
            url = url[:url.index(b"#")] or b"/"
        if url[:1] == b"/":
            path, _, query = url.partition(b"?")
        elif url == b"*":
            path, query = url, b""
        else:
            try:
                parsed = httptools.parse_url(url)
            except httptools.HttpParserInvalidURLError:
                raise Refused(400, "malformed request target") from None
            path, query = parsed.path or b"/", parsed.query or b""
        text = path.decode("latin-1")
        version = parser.get_http_version()
        scope: dict[str, Any] = {"type": "http", "asgi": ASGI, "http_version": version, "server": self.local,
                 "client": self.client, "scheme": self.scheme, "method": parser.get_method().decode("ascii"),
                 "root_path": "", "path": unquote(text) if "%" in text else text, "raw_path": path,
                 "query_string": query, "headers": self.headers, "state": {}}
        if parser.should_upgrade():
            scope["extensions"] = {EXTENSION: {"handover": self.handover}}
        keep = parser.should_keep_alive() and not self.server.stopping
        ex = Exchange(self, scope, keep, self.expect and version == "1.1")
        self.parsing = ex
        if self.current is None:
            self.current = ex
            if self.runner is None:
                self.runner = self.loop.create_task(self._run())
            else:
                self.wake()
        else:
            self.queue.append(ex)

    def on_body(self, body: bytes) -> None:
        ex = self.parsing
        if ex is None or ex.done:
            return  # answered already: the rest of its body is discarded
        ex.chunks.append(body)
        ex.buffered += len(body)
        if ex is self.current:
            self.wake()
        if ex.buffered > READ_HIGH_WATER:
            self.pause_reading()

    def on_message_complete(self) -> None:
        ex = self.parsing
        if ex is None:
            return
        ex.body_done = True
        self.parsing = None
        if ex is self.current:
            self.wake()
        elif self.queue:
            self.pause_reading()  # pipelined requests wait; do not read more behind them

    # --- flow ----------------------------------------------------------------------------
    def pause_reading(self) -> None:
        if not self.reading_paused and self.transport is not None:
            self.reading_paused = True
            self.transport.pause_reading()

    def flow(self) -> None:
        """Resume reading unless a request is waiting its turn or its body is still queued."""
        if not self.reading_paused or self.closed or self.broken is not None:
            return
        if self.queue or (self.parsing is not None and self.parsing.buffered > READ_HIGH_WATER // 2):
            return
        self.reading_paused = False
        assert self.transport is not None
        self.transport.resume_reading()

    def wake(self) -> None:
        """Something changed (body, end of response, disconnect): every waiter re-checks."""
        if self.waiters:
            waiters, self.waiters = self.waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    async def wait_event(self) -> None:
        # One future per waiter: cancelling one waiter (a task the app gave up) must not
        # cancel the others.
        waiter = self.loop.create_future()
        self.waiters.append(waiter)
        await waiter

    async def drain(self) -> None:
        if self.closed:
            return
        self.drain_waiter = self.loop.create_future()
        await self.drain_waiter

    def write(self, data: bytes) -> None:
        if not self.closed:
            self.transport.write(data)  # type: ignore[union-attr]

    def writelines(self, data: tuple[bytes, ...]) -> None:
        if not self.closed:
            self.transport.writelines(data)  # type: ignore[union-attr]

    def refuse(self, status: int, detail: str) -> None:
        """Answer a request that cannot be parsed, after any request in flight; then close."""
        self.broken = error_bytes(status, detail)
        self.pause_reading()
        bad = self.parsing  # a request whose body turned out malformed
        if bad is not None:
            bad.gone = True
            if bad is self.current:
                self.wake()  # its app sees http.disconnect; the runner answers and closes
            else:
                with contextlib.suppress(ValueError):
                    self.queue.remove(bad)
        if self.current is None:
            self._close_with(self.broken)

    def _close_with(self, data: bytes) -> None:
        if not self.closed and self.transport is not None:
            if data:
                self.transport.write(data)
            self.transport.close()
            self.closed = True

    def handover(self, head: bytes, tunnel: Tunnel) -> asyncio.Transport:
        """The `strangler.upgrade` extension (see `router.tunnel`): answer with `head`, then
        this connection carries bytes for `tunnel` and closes after it."""
        ex = self.current
        if self.closed or ex is None or self.transport is None:
            raise ClientGone("the client went away during the protocol switch")
        ex.started = ex.done = True
        ex.keep_alive = False
        self.transport.write(head)
        self.tunnel = tunnel
        if self.after_upgrade:
            tunnel.from_client(self.after_upgrade)
            self.after_upgrade = b""
        self.reading_paused = False
        self.transport.resume_reading()
        return self.transport

    def shutdown(self) -> None:
        """Server stopping: close now if idle, else after the response in flight."""
        if self.tunnel is not None:  # an upgraded connection has no end of its own to wait for
            self.tunnel.end("shutdown")
            return
        if self.current is None:
            self._close_with(b"")
        else:
            self.current.keep_alive = False
            self.queue.clear()

    # --- running requests ----------------------------------------------------------------
    async def _run(self) -> None:
        app = self.app
        while True:
            ex = self.current
            if ex is None:
                if self.closed:
                    return
                await self.wait_event()
                continue
            try:
                await app(ex.scope, ex.receive, ex.send)
            except BaseException as exc:  # noqa: BLE001 — any app failure ends this request
                if isinstance(exc, asyncio.CancelledError) and self.closed:
                    return
                if not isinstance(exc, RouterError):  # RouterError: cut on purpose (UpstreamCut)
                    print("strangler router: exception in the app:", file=sys.stderr)
                    traceback.print_exception(exc, file=sys.stderr)
                self._close_with(b"" if ex.started else error_bytes(500, "internal error"))
                return
            if self.closed:
                return
            if ex.gone or not ex.done:
                # Its body was malformed, or the app ended without finishing the response.
                if self.broken is not None and not ex.started:
                    self._close_with(self.broken)
                else:
                    self._close_with(b"" if ex.started else error_bytes(500, "the app sent no response"))
                return
            if not ex.keep_alive or not ex.body_done:
                # A request body not read to its end: its framing cannot be trusted further.
                self._close_with(b"")
                return
            self.current = self.queue.popleft() if self.queue else None
            self.last_active = monotonic()  # keep-alive idles from the end of the response
            if self.current is None and self.broken is not None:
                self._close_with(self.broken)
                return
            self.flow()


__all__ = ["ASGI", "HttpConnection", "Refused"]
