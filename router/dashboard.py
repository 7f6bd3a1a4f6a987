"""The live dashboard: one HTML page (router/ui/dashboard.html) and its Server-Sent Events.

Place in the flow: admin.py serves `GET /_strangler/ui` with `page` (static: inline CSS, JS
and SVG, nothing fetched from elsewhere, no build step) and `GET /_strangler/events` with
`events` (behind the read token). The page asks for a token once, keeps it in the tab's
sessionStorage and sends it as an `Authorization` header: it reads the event stream with
`fetch` rather than `EventSource`, which cannot send headers, so no token is ever in a URL
(or an access log). Each event is one `router.overview.overview()` document plus `window`,
the split since the previous event.

A stream ends after `STREAM_SECONDS` (the page reconnects at once), so a router stopping
gracefully waits for an open dashboard no longer than that.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from router.overview import overview, window

if TYPE_CHECKING:
    from router.overview import Status
    from router.types import Receive, Send
    from router.types import RouterCore as Router

PAGE = Path(__file__).with_name("ui") / "dashboard.html"
EVERY = 1.0  # seconds between events
STREAM_SECONDS = 60.0


@cache
def _page() -> bytes:
    return PAGE.read_bytes()


async def page(send: Send) -> None:
    body = _page()
    await send({"type": "http.response.start", "status": 200, "headers": [
        (b"content-type", b"text/html; charset=utf-8"), (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
        # everything is inline; nothing may load from elsewhere, nor frame the page
        (b"content-security-policy", b"default-src 'none'; script-src 'unsafe-inline'; "
                                     b"style-src 'unsafe-inline'; img-src data:; connect-src 'self'; "
                                     b"frame-ancestors 'none'"),
        (b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer")]})
    await send({"type": "http.response.body", "body": body})


async def events(router: Router, status_of: Status, receive: Receive, send: Send, *, every: float = EVERY,
                 seconds: float = STREAM_SECONDS) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [
        (b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-store"),
        (b"x-accel-buffering", b"no")]})
    gone = asyncio.ensure_future(_disconnected(receive))
    previous: dict[str, Any] | None = None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    try:
        await send({"type": "http.response.body", "body": f"retry: {int(every * 1000)}\n\n".encode(),
                    "more_body": True})
        while not gone.done() and loop.time() < deadline:
            doc = await overview(router, status_of)
            doc["window"] = window(doc["status"], previous)
            doc["window_seconds"] = None if previous is None else round(doc["time"] - previous["_time"], 3)
            previous = {**doc["status"], "_time": doc["time"]}
            await send({"type": "http.response.body", "more_body": True,
                        "body": b"event: overview\ndata: " + json.dumps(doc, default=str).encode() + b"\n\n"})
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(gone), every)
        if not gone.done():
            await send({"type": "http.response.body", "body": b""})
    finally:
        gone.cancel()


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
