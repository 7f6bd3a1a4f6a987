"""uvicorn's httptools protocol with the lean server's limits: request target and connections.

Place in the flow: `router.server` hands this class to uvicorn (`--http uvicorn`), bound to
`client.max_connections` (`bounded_protocol`). uvicorn answers an overlong URL with a
generic 400 (or none at all); the lean server answers 414, and so does this: the URL is
counted as it arrives, so a client cannot grow the buffer past `MAX_HEAD_BYTES` either.
Connections beyond the cap get the lean server's 503 with Retry-After (uvicorn's own
`limit_concurrency` counts the asking connection itself and sends no Retry-After).
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from router.http1 import MAX_HEAD_BYTES, Refused
from router.http1_exchange import busy_bytes, error_bytes

DEFAULT_MAX_CONNECTIONS = 4096


class RouterHttpToolsProtocol(HttpToolsProtocol):
    refused: Refused | None = None

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
