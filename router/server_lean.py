"""A lean HTTP/1.1 front server for the router: httptools' request parser on asyncio/uvloop.

Place in the flow: the outermost layer of one worker (`router.server.serve_one` with
`--http lean`, the default). Bytes from a client socket go into httptools; each parsed
request becomes one `Exchange` whose `receive`/`send` the router's ASGI app drives. Why
not uvicorn: its per-request ASGI machinery cost ~60 µs on this class of machine
(MEASUREMENTS.md); here a request is a small scope dict with the raw header list, one
object, and no Task of its own (one runner Task per connection serves request after request).

HTTP rules kept here: keep-alive (HTTP/1.0 only when asked), pipelined requests answered one
at a time in order, `Connection: close` honoured both ways, request bodies (Content-Length
or chunked) streamed to the app with reading paused while it is not consuming, responses
framed by Content-Length, chunked, or close, writes paused while the socket buffer is high,
oversized heads refused with 431 and malformed or ambiguous framing with 400 (then close),
a client that goes away reported as `http.disconnect`, idle connections closed after
`keep_alive` seconds. Graceful shutdown: stop accepting, close idle connections, let
in-flight requests finish (up to `grace` seconds), then the app's lifespan shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import sys
import traceback
from collections import deque
from http import HTTPStatus
from time import monotonic
from typing import Any
from urllib.parse import unquote

import httptools

from router.errors import RouterError

MAX_HEAD_BYTES = 64 * 1024  # request line + headers; beyond that 431 (the app also checks its own limit)
MAX_HEADERS = 100
READ_HIGH_WATER = 64 * 1024  # request body bytes buffered before reading pauses
ASGI = {"version": "3.0", "spec_version": "2.3"}
NO_BODY_STATUS = frozenset({204, 304})
_STATUS_LINES = {s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n".encode() for s in HTTPStatus}


def _status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    return line if line is not None else b"HTTP/1.1 %d Unknown\r\n" % status


def _error_bytes(status: int, detail: str) -> bytes:
    body = json.dumps({"error": "bad_request" if status == 400 else "refused", "detail": detail}).encode()
    return (_status_line(status) + b"content-type: application/json\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n%b" % (len(body), body))


class Refused(Exception):
    """Raised inside a parser callback to stop parsing; `status` and `detail` say why."""

    def __init__(self, status: int, detail: str) -> None:
        self.status, self.detail = status, detail
        super().__init__(detail)


class Exchange:
    """One request and its response on a connection: the ASGI `receive` and `send`."""

    __slots__ = ("conn", "scope", "chunks", "buffered", "body_done", "body_sent", "keep_alive",
                 "head_only", "started", "done", "framed", "chunked_out", "gone", "expect_continue",
                 "head", "status")

    def __init__(self, conn: HttpConnection, scope: dict[str, Any], keep_alive: bool, expect: bool) -> None:
        self.conn = conn
        self.scope = scope
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.body_done = False  # the parser saw the end of the request body
        self.body_sent = False  # the app received the last body message
        self.keep_alive = keep_alive
        self.head_only = scope["method"] == "HEAD"
        self.started = False  # http.response.start seen
        self.done = False  # response complete
        self.framed = False  # the response head carries its own framing
        self.chunked_out = False
        self.gone = False  # the client went away (or its request could not be parsed)
        self.expect_continue = expect
        self.head: bytes | None = None  # the response head, held until the first body message
        self.status = 0

    async def receive(self) -> dict[str, Any]:
        conn = self.conn
        while True:
            if self.gone or self.done:
                return {"type": "http.disconnect"}
            if self.chunks:
                data = self.chunks.popleft() if len(self.chunks) == 1 else b"".join(self.chunks)
                self.chunks.clear()
                self.buffered = 0
                if conn.reading_paused:
                    conn.flow()
                self.body_sent = self.body_done
                return {"type": "http.request", "body": data, "more_body": not self.body_done}
            if self.body_done and not self.body_sent:
                self.body_sent = True
                return {"type": "http.request", "body": b"", "more_body": False}
            if self.expect_continue and not self.body_done:
                self.expect_continue = False
                conn.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            await conn.wait_event()  # more body, the response's end, or a disconnect

    async def send(self, message: dict[str, Any]) -> None:
        if self.gone:
            return  # ASGI: sends after a disconnect are silently dropped
        kind = message["type"]
        if kind == "http.response.start":
            if self.started:
                raise RuntimeError("http.response.start sent twice")
            self.started = True
            self.status = status = message["status"]
            parts = [_status_line(status)]
            framed = status in NO_BODY_STATUS or status < 200
            for name, value in message.get("headers", ()):
                size = len(name)
                if size == 14 or size == 17 or size == 10:  # only these names matter here
                    low = name.lower()
                    if low == b"content-length":
                        framed = True
                    elif low == b"transfer-encoding":
                        continue  # the server frames the body itself
                    elif low == b"connection":
                        if b"close" in value.lower():
                            self.keep_alive = False
                        continue
                parts += (name, b": ", value, b"\r\n")
            self.framed = framed
            self.head = b"".join(parts)
            return
        if kind != "http.response.body":
            return
        if not self.started or self.done:
            raise RuntimeError("http.response.body sent before http.response.start or after the end")
        conn = self.conn
        body = message.get("body", b"")
        more = message.get("more_body", False)
        no_body = self.head_only or self.status in NO_BODY_STATUS
        head = self.head
        if head is not None:
            self.head = None
            if not self.framed and not self.head_only:
                if not more:
                    head += b"content-length: %d\r\n" % len(body)
                elif self.scope["http_version"] == "1.1":
                    head += b"transfer-encoding: chunked\r\n"
                    self.chunked_out = True
                else:
                    self.keep_alive = False  # HTTP/1.0: the close ends the body
            if not self.keep_alive:
                head += b"connection: close\r\n\r\n"
            elif self.scope["http_version"] == "1.0":
                head += b"connection: keep-alive\r\n\r\n"
            else:
                head += b"\r\n"
            if no_body or not body:
                conn.write(head)
            elif self.chunked_out:
                conn.writelines((head, b"%x\r\n" % len(body), body, b"\r\n"))
            elif len(body) < 16384:
                conn.write(head + body)  # a small response: one write, one packet
            else:
                conn.writelines((head, body))
        elif body and not no_body:
            if self.chunked_out:
                conn.writelines((b"%x\r\n" % len(body), body, b"\r\n"))
            else:
                conn.write(body)
        if not more:
            if self.chunked_out:
                conn.write(b"0\r\n\r\n")
            self.done = True
            conn.wake()  # a receive() waiting for the end returns http.disconnect
        elif conn.write_paused:
            await conn.drain()


class HttpConnection(asyncio.Protocol):
    """One client connection: parses requests, runs them one at a time, in order."""

    def __init__(self, server: LeanServer) -> None:
        self.server = server
        self.loop = server.loop
        self.app = server.app
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.client: tuple[str, int] | None = None
        self.local: tuple[str, int] | None = None
        self.current: Exchange | None = None  # the request being answered
        self.parsing: Exchange | None = None  # the request whose body is arriving
        self.queue: deque[Exchange] = deque()  # pipelined requests waiting their turn
        self.runner: asyncio.Task[None] | None = None
        self.event: asyncio.Future[None] | None = None
        self.drain_waiter: asyncio.Future[None] | None = None
        self.reading_paused = False
        self.write_paused = False
        self.closed = False
        self.broken: bytes | None = None  # an error answer waiting for the current request to end
        self.last_active = monotonic()
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
        self.server.connections.add(self)

    def data_received(self, data: bytes) -> None:
        self.last_active = monotonic()
        if self.broken is not None:
            return  # refusing: nothing more is parsed on this connection
        # A head spread over several reads is counted read by read (within one read, the
        # callbacks count it), so a client cannot grow the parser's buffer without bound.
        continued = self.in_head
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # No upgrades here (the router answers websockets with a close): serve, then close.
            if self.parsing is not None:
                self.parsing.keep_alive = False
            self.broken = b""
            self.pause_reading()
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

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.drain_waiter is not None and not self.drain_waiter.done():
            self.drain_waiter.set_result(None)

    # --- httptools callbacks --------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._reset_head()
        self.in_head = True

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
        scope = {"type": "http", "asgi": ASGI, "http_version": version, "server": self.local,
                 "client": self.client, "scheme": "http", "method": parser.get_method().decode("ascii"),
                 "root_path": "", "path": unquote(text) if "%" in text else text, "raw_path": path,
                 "query_string": query, "headers": self.headers, "state": {}}
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
        event = self.event
        if event is not None:
            self.event = None
            if not event.done():
                event.set_result(None)

    async def wait_event(self) -> None:
        if self.event is None:
            self.event = self.loop.create_future()
        await self.event

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
        self.broken = _error_bytes(status, detail)
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

    def shutdown(self) -> None:
        """Server stopping: close now if idle, else after the response in flight."""
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
                self._close_with(b"" if ex.started else _error_bytes(500, "internal error"))
                return
            if self.closed:
                return
            if ex.gone or not ex.done:
                # Its body was malformed, or the app ended without finishing the response.
                if self.broken is not None and not ex.started:
                    self._close_with(self.broken)
                else:
                    self._close_with(b"" if ex.started else _error_bytes(500, "the app sent no response"))
                return
            if not ex.keep_alive or not ex.body_done:
                # A request body not read to its end: its framing cannot be trusted further.
                self._close_with(b"")
                return
            self.current = self.queue.popleft() if self.queue else None
            if self.current is None and self.broken is not None:
                self._close_with(self.broken)
                return
            self.flow()


class LeanServer:
    """Serves one ASGI app on a listening socket until `stop()`."""

    def __init__(self, app: Any, *, keep_alive: float = 75.0, grace: float = 25.0) -> None:
        self.app = app
        self.keep_alive = keep_alive
        self.grace = grace
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]  # set by serve()
        self.connections: set[HttpConnection] = set()
        self.stopping = False
        self.stopped: asyncio.Event | None = None

    async def serve(self, *, host: str, port: int, sock: socket.socket | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        self.stopped = asyncio.Event()
        lifespan = Lifespan(self.app)
        if not await lifespan.startup():
            raise RouterError(f"the app failed to start: {lifespan.error}")
        if sock is not None:
            server = await self.loop.create_server(lambda: HttpConnection(self), sock=sock, backlog=4096)
        else:
            server = await self.loop.create_server(lambda: HttpConnection(self), host=host, port=port,
                                                   reuse_address=True, backlog=4096)
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(sig, self.stop)
        sweeper = self.loop.create_task(self._sweep())
        try:
            await self.stopped.wait()
            server.close()
            for conn in list(self.connections):
                conn.shutdown()
            deadline = monotonic() + self.grace
            while self.connections and monotonic() < deadline:
                await asyncio.sleep(0.05)
            for conn in list(self.connections):
                conn._close_with(b"")
        finally:
            sweeper.cancel()
            for sig in (signal.SIGTERM, signal.SIGINT):
                self.loop.remove_signal_handler(sig)
            await lifespan.shutdown()

    def stop(self) -> None:
        if self.stopping:  # a second signal: do not wait for in-flight requests
            self.grace = 0
        self.stopping = True
        if self.stopped is not None:
            self.stopped.set()

    async def _sweep(self) -> None:
        """Close connections idle past keep-alive, or stuck in a request head (slowloris)."""
        while True:
            await asyncio.sleep(min(self.keep_alive, 5.0))
            now = monotonic()
            for conn in list(self.connections):
                idle = now - conn.last_active
                if conn.current is None and (idle > self.keep_alive or (conn.in_head and idle > 30)):
                    conn._close_with(b"")


class Lifespan:
    """Runs the app's ASGI lifespan protocol: startup before serving, shutdown after."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.events: dict[str, asyncio.Future[None]] = {}
        self.error = ""
        self.task: asyncio.Task[None] | None = None

    async def startup(self) -> bool:
        loop = asyncio.get_running_loop()
        self.events = {k: loop.create_future() for k in ("startup", "shutdown")}
        self.task = loop.create_task(self._main())
        await self.inbox.put({"type": "lifespan.startup"})
        await asyncio.wait([self.events["startup"], self.task], return_when=asyncio.FIRST_COMPLETED)
        return self.events["startup"].done() and not self.error

    async def shutdown(self) -> None:
        if self.task is None or self.task.done():
            return
        await self.inbox.put({"type": "lifespan.shutdown"})
        await asyncio.wait([self.events["shutdown"], self.task], timeout=10)

    async def _main(self) -> None:
        try:
            await self.app({"type": "lifespan", "asgi": ASGI, "state": {}}, self.inbox.get, self._send)
        except BaseException as exc:  # noqa: BLE001
            self.error = self.error or repr(exc)

    async def _send(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind.endswith(".failed"):
            self.error = message.get("message", kind)
        name = kind.split(".")[1]
        if name in self.events and not self.events[name].done():
            self.events[name].set_result(None)


def run(app: Any, *, host: str, port: int, sock: socket.socket | None = None, loop: str = "auto") -> None:
    """Serve `app` until SIGTERM/SIGINT (uvloop when installed, unless loop="asyncio")."""
    factory = asyncio.new_event_loop
    if loop != "asyncio":
        with contextlib.suppress(ImportError):
            import uvloop

            factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(LeanServer(app).serve(host=host, port=port, sock=sock))


__all__ = ["Exchange", "HttpConnection", "LeanServer", "run"]
