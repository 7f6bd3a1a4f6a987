"""WebSocket passthrough: after an upstream's 101, relay bytes both ways until either side closes.

Place in the flow: `proxy` forwards an `Upgrade: websocket` request like any other (route,
backend, bounds on the handshake); when the upstream answers 101 it hands the client socket
over through the HTTP server's `strangler.upgrade` scope extension and runs a `Tunnel`.
Bytes are relayed as they are (no WebSocket framing is parsed: extensions and subprotocols
are the two ends' business). The relay is callback-driven, socket to socket: no task, no
await per chunk; each side's reading pauses while the other side's send buffer is full.

The server contract (`router.http1`, `router.uvicorn_protocol`): the scope's
`extensions["strangler.upgrade"]["handover"]` is a callable `handover(head, tunnel)` that
writes the response head verbatim, stops parsing HTTP on the connection, feeds any bytes the
client sent past its request head (and every later read) to `tunnel.from_client`, reports
the client's write buffer through `client_pause_writing`/`client_resume_writing` and its
close through `client_closed`, and returns the client transport. It is offered only on
requests that ask to upgrade; the connection closes after the tunnel (or a plain answer).
"""

from __future__ import annotations

import asyncio
from time import monotonic
from typing import Any, Protocol

from router.client import Connection

EXTENSION = "strangler.upgrade"


class ClientTransport(Protocol):
    def write(self, data: bytes) -> None: ...
    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def close(self) -> None: ...


class Tunnel:
    """One upgraded connection: the client's socket on one side, the upstream's on the other."""

    def __init__(self, upstream: Connection, idle_timeout: float) -> None:
        self.loop = upstream.loop
        self.idle_timeout = idle_timeout
        self.client: ClientTransport | None = None
        self.upstream = upstream
        self.upstream_transport: Any = upstream.transport
        self.last_active = monotonic()
        self.ended = self.loop.create_future()  # the side that ended it: client, upstream, idle

    # --- wiring -------------------------------------------------------------------------
    def start(self, client: ClientTransport) -> None:
        """The client socket is ours: take the upstream socket off its HTTP parser."""
        self.client = client
        early = self.upstream.take()  # sent by the upstream right after its 101
        self.upstream_transport.set_protocol(_UpstreamSide(self))
        if early:
            client.write(early)
        self.upstream_transport.resume_reading()  # `client.Connection` paused it at the 101

    async def run(self) -> str:
        """Relay until a side closes or nothing moved for `idle_timeout`; returns who ended it."""
        while not self.ended.done():
            left = self.last_active + self.idle_timeout - monotonic()
            if left <= 0:
                self.end("idle_timeout")
                break
            try:
                await asyncio.wait_for(asyncio.shield(self.ended), left)
            except TimeoutError:
                continue
            except asyncio.CancelledError:
                self.end("cancelled")
                raise
        return self.ended.result()

    def end(self, reason: str) -> None:
        """Close both sockets (what is buffered still goes out first) and free the slot."""
        if not self.ended.done():
            self.ended.set_result(reason)
        if self.client is not None:
            self.client.close()
        self.upstream.close()  # also frees its slot in the upstream's max_connections

    # --- the client side (called by the HTTP server's protocol) ---------------------------
    def from_client(self, data: bytes) -> None:
        self.last_active = monotonic()
        self.upstream_transport.write(data)

    def client_closed(self) -> None:
        self.end("client")

    def client_pause_writing(self) -> None:
        self.upstream_transport.pause_reading()

    def client_resume_writing(self) -> None:
        self.upstream_transport.resume_reading()

    # --- the upstream side (called by `_UpstreamSide`) ----------------------------------
    def from_upstream(self, data: bytes) -> None:
        self.last_active = monotonic()
        if self.client is not None:
            self.client.write(data)


class _UpstreamSide(asyncio.Protocol):
    """The upstream socket's protocol once it speaks WebSocket, not HTTP."""

    def __init__(self, tunnel: Tunnel) -> None:
        self.tunnel = tunnel

    def data_received(self, data: bytes) -> None:
        self.tunnel.from_upstream(data)

    def eof_received(self) -> bool | None:
        return None  # close: the relay has no half-closed state

    def connection_lost(self, exc: Exception | None) -> None:
        self.tunnel.end("upstream")

    def pause_writing(self) -> None:
        client = self.tunnel.client
        if client is not None:
            client.pause_reading()

    def resume_writing(self) -> None:
        client = self.tunnel.client
        if client is not None:
            client.resume_reading()


def wants_websocket(connection: bytes | None, upgrade: bytes | None) -> bool:
    """`Connection: upgrade` and `Upgrade: websocket` (any case, among other tokens)."""
    if connection is None or upgrade is None:
        return False
    tokens = {t.strip().lower() for t in connection.split(b",")}
    return b"upgrade" in tokens and b"websocket" in {t.strip().lower() for t in upgrade.split(b",")}


__all__ = ["EXTENSION", "Tunnel", "wants_websocket"]
