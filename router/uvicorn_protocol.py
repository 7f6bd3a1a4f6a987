"""uvicorn's httptools protocol with the lean server's limit on the request target.

Place in the flow: `router.server` hands this class to uvicorn (`--http uvicorn`). uvicorn
answers an overlong URL with a generic 400 (or none at all); the lean server answers 414,
and so does this: the URL is counted as it arrives, so a client cannot grow the buffer
past `MAX_HEAD_BYTES` either.
"""

from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from router.http1 import MAX_HEAD_BYTES, Refused
from router.http1_exchange import error_bytes


class RouterHttpToolsProtocol(HttpToolsProtocol):
    refused: Refused | None = None

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
