"""A lean pooled HTTP/1.1 upstream client on httptools — the forwarding half of the hot path.

Place in the flow: `proxy` borrows a `Connection` from the upstream's `Pool`, writes the
request head and streams the body, waits for the response head, then pulls body chunks
until the message ends and gives the connection back.

Why not httpx/aiohttp: see /work/shared/MEASUREMENTS.md — most of a Python proxy's time is
the client's pool and stream machinery. Here bytes from the socket go straight into the
httptools parser, headers stay raw bytes, a small response completes within one read so
the waiting request is woken once, and a finished connection goes back to a LIFO list of
idle connections: no locks, no extra tasks, one timer per wait.

Back-pressure both ways: request body writes wait while the upstream socket buffer is full
(`pause_writing`), and upstream reads pause while more than `HIGH_WATER` bytes wait for the
client. Socket and parser errors become `UpstreamError`s here and nowhere else.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections import deque
from time import monotonic
from typing import Any

import httptools

from router.errors import (
    UpstreamBusy,
    UpstreamConnectError,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamTimeout,
    UpstreamTLSError,
)
from router.tls import handshake_reason

HIGH_WATER = 256 * 1024  # response bytes buffered before upstream reads pause
SWEEP = 0.05  # seconds between read-timeout sweeps (timeouts are this precise)


class Connection(asyncio.Protocol):
    """One keep-alive connection to an upstream; parses one response at a time."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.loop = pool.loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.busy = False
        self.write_paused = False
        self.drain_waiter: asyncio.Future[None] | None = None
        self.deadline = 0.0
        self.waiting_on: asyncio.Future[None] | None = None
        self.holds_slot = False  # counted in the pool's open connections
        self.idle_since = 0.0
        self._reset(head_only=False)

    def _reset(self, *, head_only: bool) -> None:
        self.head_only = head_only
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.framed = False  # the response has Content-Length or Transfer-Encoding
        self.head_done = False
        self.complete = False
        self.keep_alive = False
        self.until_close = False
        self.got_bytes = False
        self.error: UpstreamError | None = None
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.reading_paused = False
        self.must_close = False  # the request body was not sent whole: never reuse
        self.waiter: asyncio.Future[None] | None = None

    # --- asyncio.Protocol ---------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        if not self.busy:
            # Bytes nobody asked for (or the server closing politely): never reuse this one.
            self.close()
            return
        self.got_bytes = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            # After a 101 the bytes are the new protocol's: kept for `router.tunnel`, and
            # nothing more is read until it takes the socket over.
            self.chunks.append(data[exc.args[0]:] if exc.args else b"")
            if self.transport is not None:
                self.transport.pause_reading()
        except httptools.HttpParserError as exc:
            self._fail(UpstreamProtocolError(f"malformed response from {self.pool.name}: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.forget(self)
        if self.busy and not self.complete:
            if isinstance(exc, ssl.SSLError) and not self.got_bytes:
                # TLS 1.3: the server checks our client certificate after our handshake ended,
                # so its refusal arrives as the first read.
                self._fail(UpstreamTLSError(f"TLS with {self.pool.name} failed: {handshake_reason(exc)} "
                                            f"— check upstreams.{self.pool.name}.tls"))
            elif self.head_done and self.until_close:
                self.complete = True  # a body delimited by the connection closing
                self._wake()
            elif self.got_bytes:
                self._fail(UpstreamProtocolError(f"{self.pool.name} closed the connection mid-response"))
            else:
                self._fail(StaleConnection(f"{self.pool.name} closed the connection before answering"))
        if self.drain_waiter is not None and not self.drain_waiter.done():
            self.drain_waiter.set_exception(UpstreamProtocolError(f"{self.pool.name} closed the connection"))

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.drain_waiter is not None and not self.drain_waiter.done():
            self.drain_waiter.set_result(None)

    # --- httptools callbacks ------------------------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"content-length" or name == b"transfer-encoding":
            self.framed = True
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            self.headers = []  # an interim response (103 Early Hints): wait for the real one
            self.framed = False
            return
        self.status = status
        self.head_done = True
        self.keep_alive = self.parser.should_keep_alive()
        if self.head_only or status == 101:
            self.complete = True
            self.keep_alive = False  # httptools cannot be told the body is absent: don't reuse
        elif status not in (204, 304):
            self.until_close = not self.framed
        self._wake()

    def on_body(self, body: bytes) -> None:
        if self.head_only:
            return
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > HIGH_WATER and not self.reading_paused and self.transport:
            self.reading_paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self.head_done:
            self.complete = True
            self._wake()

    # --- used by the proxy --------------------------------------------------------------
    def begin(self, head: bytes, *, head_only: bool) -> None:
        """Start an exchange: write the request head (the body follows via `write`)."""
        self._reset(head_only=head_only)
        self.busy = True
        assert self.transport is not None
        self.transport.write(head)

    async def write(self, data: bytes, timeout: float) -> None:
        """Send request body bytes, waiting while the upstream's socket is full."""
        if self.closed:
            raise self.error or UpstreamProtocolError(f"{self.pool.name} closed the connection")
        assert self.transport is not None
        self.transport.write(data)
        if self.write_paused:
            self.drain_waiter = self.loop.create_future()
            await self._wait(self.drain_waiter, timeout)

    async def response_head(self, timeout: float) -> tuple[int, list[tuple[bytes, bytes]]]:
        """Wait for the response status line and headers."""
        while not self.head_done:
            if self.error is not None:
                raise self.error
            # `_wait` written out: the wait every request makes, one coroutine less.
            self.waiter = fut = self.loop.create_future()
            self.deadline = monotonic() + timeout
            self.waiting_on = fut
            waiting = self.pool.waiting
            waiting.add(self)
            if self.pool.sweeper is None:
                self.pool.start_sweeper()
            try:
                await fut
            finally:
                waiting.discard(self)
                self.waiting_on = None
        return self.status, self.headers

    async def body(self, timeout: float) -> tuple[bytes, bool]:
        """The next body bytes and whether more follow (waits while none are buffered)."""
        while not self.chunks and not self.complete:
            if self.error is not None:
                raise self.error
            self.waiter = self.loop.create_future()
            await self._wait(self.waiter, timeout)
        return self.take(), not self.complete

    def take(self) -> bytes:
        chunks = self.chunks
        data = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self.buffered = 0
        if self.reading_paused and self.transport is not None:
            self.reading_paused = False
            self.transport.resume_reading()
        return data

    def finish(self) -> None:
        """The exchange is over: give the connection back (or close it if not reusable)."""
        self.busy = False
        if self.complete and self.keep_alive and not self.closed and not self.chunks \
                and not self.must_close:
            self.pool.release(self)
        else:
            self.close()

    def close(self) -> None:
        self.busy = False
        if not self.closed and self.transport is not None:
            self.closed = True
            self.transport.close()
        self.pool.forget(self)

    # --- internals ----------------------------------------------------------------------
    async def _wait(self, fut: asyncio.Future[None], timeout: float) -> None:
        # No timer per wait (a loop timer costs more than the rest of a small exchange):
        # the pool's sweeper fails waits past their deadline, to within SWEEP seconds.
        self.deadline = monotonic() + timeout
        self.waiting_on = fut
        waiting = self.pool.waiting
        waiting.add(self)
        if self.pool.sweeper is None:
            self.pool.start_sweeper()
        try:
            await fut
        finally:
            waiting.discard(self)
            self.waiting_on = None

    def expire(self) -> None:
        """Called by the sweeper when this connection's wait passed its deadline."""
        fut = self.waiting_on
        if fut is not None and not fut.done():
            fut.set_exception(UpstreamTimeout(f"{self.pool.name} did not answer within its read timeout"))
            self.close()

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, error: UpstreamError) -> None:
        self.error = error
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)


class StaleConnection(UpstreamProtocolError):
    """A pooled connection died before any response byte: retrying on a fresh one is safe
    when nothing of the request body was consumed."""

    maybe_processed = False


class Pool:
    """Idle keep-alive connections to one upstream (per worker), reused LIFO."""

    def __init__(self, *, name: str, host: str, port: int, size: int,
                 max_connections: int = 1024, idle_timeout: float = 4.0,
                 tls: ssl.SSLContext | None = None, server_name: str | None = None) -> None:
        self.name = name
        self.host = host
        self.port = port
        self.tls = tls  # https upstreams: new connections handshake with this context
        self.server_name = server_name
        self.size = size
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self.open = 0  # connections open or being opened (busy and idle)
        self.loop = asyncio.get_running_loop()
        self.idle: list[Connection] = []
        self.retired = False
        self.waiting: set[Connection] = set()  # connections inside a timed wait
        self.sweeper: asyncio.Task[None] | None = None

    def start_sweeper(self) -> None:
        self.sweeper = self.loop.create_task(self._sweep())

    async def _sweep(self) -> None:
        while not (self.retired and not self.waiting):
            await asyncio.sleep(SWEEP)
            now = monotonic()
            for conn in [c for c in self.waiting if c.deadline <= now]:
                conn.expire()
        self.sweeper = None

    async def acquire(self, connect_timeout: float) -> tuple[Connection, bool]:
        """A connection and whether it was reused from the pool."""
        idle = self.idle
        if idle:
            now = monotonic()
            while idle:
                conn = idle.pop()
                if conn.closed:
                    continue
                if now - conn.idle_since < self.idle_timeout:
                    return conn, True
                # Idle too long: the upstream may be closing it right now. The list is
                # LIFO, so every connection below is older still.
                conn.close()
                while idle:
                    idle.pop().close()
        if self.open >= self.max_connections:
            raise UpstreamBusy(f"{self.name} has all its {self.max_connections} connections busy "
                               "(max_connections)")
        self.open += 1
        try:
            _, conn = await asyncio.wait_for(self._connect(), connect_timeout)
        except TimeoutError as exc:
            self.open -= 1
            raise UpstreamTimeout(f"could not connect to {self.name} within {connect_timeout}s") from exc
        except ssl.SSLError as exc:
            self.open -= 1
            raise UpstreamTLSError(f"TLS handshake with {self.name} ({self.host}:{self.port}) "
                                   f"failed: {handshake_reason(exc)} — check upstreams.{self.name}.tls "
                                   "(ca, server_name)") from exc
        except OSError as exc:
            self.open -= 1
            raise UpstreamConnectError(f"could not connect to {self.name} "
                                       f"({self.host}:{self.port}): {exc.strerror or exc}") from exc
        except BaseException:
            self.open -= 1
            raise
        if conn.closed:  # lost before we resumed: its forget() ran without the slot
            self.open -= 1
        else:
            conn.holds_slot = True
        return conn, False

    def _connect(self) -> Any:
        if self.tls is None:
            return self.loop.create_connection(lambda: Connection(self), self.host, self.port)
        return self.loop.create_connection(lambda: Connection(self), self.host, self.port,
                                           ssl=self.tls, server_hostname=self.server_name)

    def release(self, conn: Connection) -> None:
        if self.retired or len(self.idle) >= self.size:
            conn.close()
        else:
            conn.idle_since = monotonic()
            self.idle.append(conn)

    def forget(self, conn: Connection) -> None:
        if conn.holds_slot:
            conn.holds_slot = False
            self.open -= 1
        if conn in self.idle:
            self.idle.remove(conn)

    def drop_idle(self) -> None:
        """Close the idle connections (their endpoint failed its health checks)."""
        while self.idle:
            self.idle.pop().close()

    def close(self) -> None:
        """Retire the pool (after a reload removed its upstream): idle and returning
        connections are closed; in-flight exchanges finish undisturbed."""
        self.retired = True
        while self.idle:
            self.idle.pop().close()
        if self.sweeper is not None and not self.waiting:
            self.sweeper.cancel()
            self.sweeper = None


async def fetch(pool: Pool, head: bytes, *, connect_timeout: float, read_timeout: float,
                head_only: bool = False, limit: int = 8 * 1024 * 1024
                ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """One whole bodyless exchange (side traffic: shadow copies, whoami). Body capped at `limit`."""
    conn, _ = await pool.acquire(connect_timeout)
    try:
        conn.begin(head, head_only=head_only)
        status, headers = await conn.response_head(read_timeout)
        chunks = []
        size = 0
        more = not conn.complete
        if conn.complete:
            chunks.append(conn.take())
        while more:
            data, more = await conn.body(read_timeout)
            size += len(data)
            if size > limit:
                raise UpstreamProtocolError(f"{pool.name} answered more than {limit} bytes")
            chunks.append(data)
        conn.finish()
        return status, headers, b"".join(chunks)
    except BaseException:
        conn.close()
        raise
