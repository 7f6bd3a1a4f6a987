"""One exchange with an upstream: send the request, relay the response.

Place in the flow: `proxy` decides where a request goes; this module moves the bytes.
The request head goes out in one write and the body is streamed as the client sends it
(pausing while the upstream's socket is full); the response head and body are relayed to
the ASGI `send` as they arrive (upstream reads pause while ~256 KB wait for the client).
A small response that completed within one read is answered in exactly two ASGI messages.
A pooled connection the upstream had silently closed is retried once on a fresh one for an
idempotent request without a body; any other request gets the error (502), never a replay.
No wait outlasts the route's deadline; a request body that stalls past `client.body_timeout`
gets 408, and a client that leaves the response unread past `client.send_timeout` is cut
(both free the upstream connection).
"""

from __future__ import annotations

import asyncio
from time import monotonic
from typing import TYPE_CHECKING, Any

from router.client import Connection, StaleConnection
from router.config import Config, Upstream
from router.errors import BadRequest, ClientGone, UpstreamCut, UpstreamError, UpstreamProtocolError

if TYPE_CHECKING:
    from router.targets import Target
    from router.types import Receive, Send

HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding",
                        b"te", b"trailer", b"upgrade", b"proxy-authenticate", b"proxy-authorization"})
RESP_SKIP = HOP_BY_HOP | {b"x-request-id"}
SHADOW_CAPTURE_LIMIT = 1024 * 1024
# Put in a capture list when a body is too big to shadow: "skip this comparison".
TOO_BIG = b"\x00strangler: body too big to shadow\x00"


class Outgoing:
    """One request as it goes upstream: its head (without the Host value) and how to send it.

    The same for every attempt (retries, another endpoint, the fallback)."""

    __slots__ = ("line", "host", "tail", "method", "has_body", "chunked", "replay", "deadline",
                 "body_timeout", "max_body", "upgrade", "capture")

    def __init__(self, *, line: bytes, host: bytes | None, tail: bytes, method: str,
                 has_body: bool, chunked: bool, replay: bool, deadline: float,
                 body_timeout: float, max_body: int | None, upgrade: bool,
                 capture: list[bytes] | None) -> None:
        self.line, self.host, self.tail, self.method = line, host, tail, method
        self.has_body, self.chunked, self.replay = has_body, chunked, replay
        self.deadline, self.body_timeout, self.max_body = deadline, body_timeout, max_body
        self.upgrade = upgrade
        self.capture = capture  # the request body, for a shadow copy (None: not kept)


async def exchange(upstream: Upstream, target: Target, out: Outgoing, receive: Receive) -> Connection:
    """Send the request to one endpoint; return the connection once the response head arrived.

    No wait goes past `out.deadline` (monotonic): the route's whole-request budget.
    An error raised before a byte went out says so (`maybe_processed = False`).
    """
    if upstream.host_header == "client" and out.host is not None:
        head = out.line + out.host + b"\r\n" + out.tail
    else:
        head = out.line + target.authority + b"\r\n" + out.tail
    deadline = out.deadline
    pool = target.pool
    fresh_retry = False
    while True:
        try:
            conn, reused = await pool.acquire(min(upstream.connect_timeout, deadline - monotonic()))
        except UpstreamError as exc:
            exc.maybe_processed = False  # no connection: nothing was sent
            raise
        try:
            conn.begin(head, head_only=out.method == "HEAD")
            if out.has_body:
                await _stream_body(conn, receive, out.chunked, upstream.read_timeout, out.capture,
                                   deadline=deadline, body_timeout=out.body_timeout,
                                   max_body=out.max_body)
            await conn.response_head(min(upstream.read_timeout, deadline - monotonic()))
            if conn.status == 101 and not out.upgrade:
                raise UpstreamProtocolError(f"{upstream.name} switched protocols (101) on a "
                                            "request that did not ask to")
            return conn
        except StaleConnection as exc:
            conn.close()
            # A pooled connection closed without an answer: the upstream may have closed it
            # idle, or read the request, run it and died. Only an idempotent request
            # (`replay`, never one with a body) may go again, once, on a fresh connection.
            if reused and out.replay and not out.has_body and not fresh_retry:
                fresh_retry = True
                continue
            if reused and not out.replay:
                raise _not_replayed(upstream, out.method) from exc
            raise
        except BaseException:
            conn.close()
            raise

def _not_replayed(upstream: Upstream, method: str) -> StaleConnection:
    error = StaleConnection(
        f"{upstream.name} closed a reused connection without answering; the {method} was not "
        "sent again because the upstream may have run it already — repeat it only if that is safe")
    error.kind = "not_replayed"
    return error


async def _stream_body(conn: Connection, receive: Receive, chunked: bool, timeout: float,
                       capture: list[bytes] | None = None, *, deadline: float,
                       body_timeout: float, max_body: int | None) -> None:
    captured = 0
    received = 0
    while True:
        message = await _receive_within(receive, min(body_timeout, deadline - monotonic()))
        if message["type"] == "http.disconnect":
            raise ClientGone("the client went away while sending the body")
        data = message.get("body", b"")
        more = message.get("more_body", False)
        received += len(data)
        if max_body is not None and received > max_body:
            raise BadRequest(f"the request body exceeds this route's max_body_bytes ({max_body})",
                             status=413)
        if capture is not None:
            captured += len(data)
            if captured > SHADOW_CAPTURE_LIMIT:
                capture.clear()
                capture.append(TOO_BIG)
                capture = None
            else:
                capture.append(data)
        if conn.head_done or conn.closed:
            # The upstream answered early (e.g. 413): stop sending, and never reuse the
            # connection — the upstream may still be waiting for the rest of the body.
            conn.must_close = True
            return
        if chunked:
            if data:
                await conn.write(b"%x\r\n%b\r\n" % (len(data), data), timeout)
            if not more:
                await conn.write(b"0\r\n\r\n", timeout)
        elif data:
            await conn.write(data, timeout)
        if not more:
            return

async def _receive_within(receive: Receive, timeout: float) -> Any:
    # A client that announces a body and stalls (slow POST, R.U.D.Y.) would otherwise hold
    # its connection and an upstream connection for as long as it likes.
    try:
        async with asyncio.timeout(timeout):
            return await receive()
    except TimeoutError:
        raise BadRequest("the request body stopped arriving (client.body_timeout or the "
                         "route's deadline)", status=408) from None


async def _send_within(send: Send, message: Any, timeout: float) -> None:
    # A client that stops reading must not hold the upstream connection forever.
    try:
        async with asyncio.timeout(timeout):
            await send(message)
    except TimeoutError:
        raise ClientGone("the client left the response unread past client.send_timeout") from None


async def relay(conn: Connection, receive: Receive, send: Send, config: Config,
          backend: str, request_id: str, capture: list[bytes] | None, breaker: Any) -> int:
    """Relay the response head and body; returns the status."""
    status = conn.status
    headers = []
    connection = None
    for header in conn.headers:  # one pass: hop-by-hop dropped, the rest kept as they are
        if header[0] in RESP_SKIP:
            if header[0] == b"connection":
                connection = header[1] if connection is None else connection + b"," + header[1]
            continue
        headers.append(header)
    if connection is not None:
        named = {t.strip().lower() for t in connection.split(b",")}
        headers = [h for h in headers if h[0] not in named]
    if config.backend_header:
        headers.append((config.backend_header.encode(), backend.encode()))
    headers.append((b"x-request-id", request_id.encode()))
    read_timeout = config.upstreams[backend].read_timeout
    send_timeout = config.client.send_timeout
    ok = status < 500
    gone: asyncio.Future[None] | None = None
    try:
        if conn.complete:
            body = conn.take()
            conn.finish()
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            if capture is not None:
                capture.append(body)
            return status
        await send({"type": "http.response.start", "status": status, "headers": headers})
        # A streamed response: notice a client that goes away, so a large download is
        # not pulled from the upstream for nobody (the server's send() stays silent).
        gone = asyncio.ensure_future(_until_disconnect(receive))
        captured = 0
        while True:
            if gone.done():
                ok = True  # not the upstream's fault
                conn.close()
                raise ClientGone("the client went away during the response")
            body, more = await conn.body(read_timeout)
            if capture is not None:
                captured += len(body)
                if captured <= SHADOW_CAPTURE_LIMIT:
                    capture.append(body)
                else:
                    # Too big to compare: an empty list with this marker means "skip".
                    capture.clear()
                    capture.append(TOO_BIG)
                    capture = None
            if not more:
                conn.finish()
            await _send_within(send, {"type": "http.response.body", "body": body, "more_body": more},
                               send_timeout)
            if not more:
                return status
    except UpstreamError as exc:
        ok = False
        conn.close()
        raise UpstreamCut(f"{backend} failed mid-response ({exc}); the response was cut") from exc
    except BaseException:
        conn.close()
        raise
    finally:
        if gone is not None:
            gone.cancel()
        breaker.record(ok)


async def _until_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
