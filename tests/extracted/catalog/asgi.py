"""A synchronous face for driving an ASGI app in-process with `httpx.ASGITransport`.

Tests (and hypothesis) stay plain functions; the app runs on an event loop in a blocking
portal thread, with its lifespan, exactly as a server would run it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from anyio.from_thread import BlockingPortal, start_blocking_portal


class ASGIClient:
    """`client.get(path, params=...)` → `httpx.Response`, against an in-process ASGI app."""

    def __init__(self, portal: BlockingPortal, client: httpx.AsyncClient) -> None:
        self._portal = portal
        self._client = client

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        return self._portal.call(lambda: self._client.request(method, url, **kwargs))

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def put(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("PUT", url, **kwargs)

    def patch(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("PATCH", url, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", url, **kwargs)


@contextmanager
def asgi_client(app: Any, *, base_url: str = "http://testserver",
                peer: tuple[str, int] = ("127.0.0.1", 123)) -> Iterator[ASGIClient]:
    """Run `app`'s lifespan in a portal and yield a client bound to it, connecting from `peer`."""
    with start_blocking_portal() as portal:
        lifespan = portal.wrap_async_context_manager(app.router.lifespan_context(app))
        with lifespan:
            client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=peer),
                                       base_url=base_url)
            try:
                yield ASGIClient(portal, client)
            finally:
                portal.call(client.aclose)
