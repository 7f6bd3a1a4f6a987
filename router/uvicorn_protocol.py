"""uvicorn's httptools protocol with the lean server's limits: request target and connections.

Place in the flow: `router.server` hands this class to uvicorn (`--http uvicorn`), bound to
`client.max_connections` (`bounded_protocol`). uvicorn answers an overlong URL with a
generic 400 (or none at all); the lean server answers 414, and so does this: the URL is
counted as it arrives, so a client cannot grow the buffer past `MAX_HEAD_BYTES` either.
Connections beyond the cap get the lean server's 503 with Retry-After (uvicorn's own
`limit_concurrency` counts the asking connection itself and sends no Retry-After).
WebSocket requests reach the router as plain `http` requests with the `strangler.upgrade`
extension, as on the lean server (`router.tunnel`): uvicorn's own WebSocket support is off
(`ws="none"`) because the router relays bytes, it does not terminate WebSockets.
"""

from __future__ import annotations

import asyncio
import functools
from typing import TYPE_CHECKING, Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from router.errors import ClientGone
from router.http1 import MAX_HEAD_BYTES, Refused
from router.http1_exchange import busy_bytes, error_bytes
from router.tunnel import EXTENSION

if TYPE_CHECKING:
    from router.tunnel import Tunnel

DEFAULT_MAX_CONNECTIONS = 4096


class RouterHttpToolsProtocol(HttpToolsProtocol):
    refused: Refused | None = None
    tunnel: Tunnel | None = None  # after a 101: every read goes to the upstream as is
    after_upgrade = b""  # bytes the client sent past an Upgrade request's head

    def __init__(self, *args: Any, max_connections: int = DEFAULT_MAX_CONNECTIONS,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_connections = max_connections

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:  # this one included
            transport.write(busy_bytes(f"the router holds its {self.max_connections} client "
                                       "connections (client.max_connections)"))
            transport.close()

    def data_received(self, data: bytes) -> None:
        if self.tunnel is not None:
            self.tunnel.from_client(data)
            return
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            # Not HTTP/1.1 past the head: wait for the app to switch or answer (then close).
            self.after_upgrade = data[exc.args[0]:] if exc.args else b""
            self.flow.pause_reading()
        except httptools.HttpParserError:
            msg = "Invalid HTTP request received."
            self.logger.warning(msg)
            self.send_400_response(msg)

    def on_headers_complete(self) -> None:
        upgrade = self.parser.should_upgrade()
        if upgrade:
            self.scope["extensions"] = {EXTENSION: {"handover": self.handover}}
        super().on_headers_complete()
        if upgrade:
            self.cycle.keep_alive = False  # a plain answer to an Upgrade ends the connection

    def handover(self, head: bytes, tunnel: Tunnel) -> asyncio.Transport:
        """The `strangler.upgrade` extension (see `router.tunnel`)."""
        cycle = self.cycle
        if self.transport.is_closing() or cycle.disconnected:
            raise ClientGone("the client went away during the protocol switch")
        cycle.response_started = cycle.response_complete = True  # uvicorn adds nothing more
        self.transport.write(head)
        self.tunnel = tunnel
        if self.after_upgrade:
            tunnel.from_client(self.after_upgrade)
            self.after_upgrade = b""
        self.flow.resume_reading()
        return self.transport

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self.tunnel is not None:
            self.tunnel.client_closed()

    def pause_writing(self) -> None:
        super().pause_writing()
        if self.tunnel is not None:
            self.tunnel.client_pause_writing()

    def resume_writing(self) -> None:
        super().resume_writing()
        if self.tunnel is not None:
            self.tunnel.client_resume_writing()

    def shutdown(self) -> None:
        if self.tunnel is not None:  # uvicorn waits for the app's task: end the relay now
            self.tunnel.end("shutdown")
            return
        super().shutdown()

    def on_message_begin(self) -> None:
        self.refused = None
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        if len(self.url) > MAX_HEAD_BYTES:
            self.refused = Refused(414, f"request target exceeds {MAX_HEAD_BYTES} bytes")
            raise self.refused

    def send_400_response(self, msg: str) -> None:
        # uvicorn calls this for any parser error; ours says what was wrong.
        if self.refused is None:
            super().send_400_response(msg)
            return
        self.transport.write(error_bytes(self.refused.status, self.refused.detail))
        self.transport.close()


def bounded_protocol(max_connections: int) -> Any:
    """The protocol factory uvicorn calls per connection (it passes config and state)."""
    return functools.partial(RouterHttpToolsProtocol, max_connections=max_connections)
