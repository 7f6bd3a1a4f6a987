"""One request and its response on a lean-server connection, as ASGI `receive` and `send`.

Place in the flow: `router.http1.HttpConnection` parses a request head into a scope and an
`Exchange`; the router's ASGI app calls `receive` (body chunks as they arrive; then, once
the response is complete or the client left, `http.disconnect`) and `send`. The response
head is held until the first body message so a small response goes out in one write;
framing is the app's Content-Length, else Content-Length for a single-message body, else
chunked (HTTP/1.1) or close-delimited (HTTP/1.0). Sends wait while the socket buffer is high.
"""

from __future__ import annotations

import json
from collections import deque
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from router.types import Wire

NO_BODY_STATUS = frozenset({204, 304})
_STATUS_LINES = {s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n".encode() for s in HTTPStatus}


def status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    return line if line is not None else b"HTTP/1.1 %d Unknown\r\n" % status


def error_bytes(status: int, detail: str) -> bytes:
    body = json.dumps({"error": "bad_request" if status == 400 else "refused", "detail": detail}).encode()
    return (status_line(status) + b"content-type: application/json\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n%b" % (len(body), body))


def busy_bytes(detail: str) -> bytes:
    """A whole 503 answer for a connection turned away before any request was read."""
    body = json.dumps({"error": "busy", "detail": detail}).encode()
    return (status_line(503) + b"content-type: application/json\r\ncontent-length: %d\r\n"
            b"retry-after: 1\r\nconnection: close\r\n\r\n%b" % (len(body), body))


class Exchange:
    """One request and its response on a connection: the ASGI `receive` and `send`."""

    __slots__ = ("conn", "scope", "chunks", "buffered", "body_done", "body_sent", "keep_alive",
                 "head_only", "started", "done", "framed", "chunked_out", "gone", "expect_continue",
                 "head", "status")

    def __init__(self, conn: Wire, scope: dict[str, Any], keep_alive: bool, expect: bool) -> None:
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
            parts = [status_line(status)]
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
            # Held for the first body message (one write for a small response), but never
            # past this turn of the loop: a slow first chunk must not hide the head.
            self.conn.loop.call_soon(self._flush_head)
            return
        if kind != "http.response.body":
            return
        if not self.started or self.done:
            raise RuntimeError("http.response.body sent before http.response.start or after the end")
        conn = self.conn
        body = message.get("body", b"")
        more = message.get("more_body", False)
        no_body = self.head_only or self.status in NO_BODY_STATUS
        if self.head is not None:
            head = self._finish_head(None if more else len(body))
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


    def _finish_head(self, length: int | None) -> bytes:
        """The held head with framing (length None: more body follows) and Connection."""
        head = self.head
        assert head is not None
        self.head = None
        if not self.framed and not self.head_only:
            if length is not None:
                head += b"content-length: %d\r\n" % length
            elif self.scope["http_version"] == "1.1":
                head += b"transfer-encoding: chunked\r\n"
                self.chunked_out = True
            else:
                self.keep_alive = False  # HTTP/1.0: the close ends the body
        if not self.keep_alive:
            return head + b"connection: close\r\n\r\n"
        if self.scope["http_version"] == "1.0":
            return head + b"connection: keep-alive\r\n\r\n"
        return head + b"\r\n"

    def _flush_head(self) -> None:
        if self.head is not None and not self.gone:
            self.conn.write(self._finish_head(None))


__all__ = ["Exchange", "busy_bytes", "error_bytes", "status_line"]
