"""Forwarding headers are believed only from the router (e.g. `CATALOG_TRUSTED_PROXIES`).

Pagination links name the host in `X-Forwarded-Host` (so `next` leads back through the
router); anyone reaching the service directly could otherwise poison them. From a trusted
peer (default: loopback, where the router runs in the stack) `X-Forwarded-For` gives the
client address and `X-Forwarded-Proto` the scheme (the router's walk, shared in
`forwarding`), and `X-Forwarded-Host` stands; from anyone else all of them are removed. The
server must not rewrite the peer itself (`__main__` runs uvicorn with `proxy_headers=False`).
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.types import ASGIApp, Receive, Scope, Send

import forwarding
from extracted.kit.errors import ConfigError

FORWARDED = forwarding.HEADERS


def parse_networks(text: str, *, name: str) -> tuple[forwarding.Network, ...]:
    """`127.0.0.1/32,::1/128` → networks (an address alone is a /32 or /128)."""
    try:
        return forwarding.parse_networks(text, name=name)
    except forwarding.ForwardingError as exc:
        raise ConfigError(str(exc)) from exc


class TrustedProxyMiddleware:
    """Outermost: the trust decision is made on the socket's peer address."""

    def __init__(self, app: ASGIApp, *, networks: Sequence[forwarding.Network]) -> None:
        self.app = app
        self.trust = forwarding.ProxyTrust(networks)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            client = scope.get("client")
            if client and self.trust.trusts(client[0]):
                scope = self._believe(scope)
            elif any(name in FORWARDED for name, _ in scope["headers"]):
                scope = {**scope, "headers": [(n, v) for n, v in scope["headers"] if n not in FORWARDED]}
        await self.app(scope, receive, send)

    def _believe(self, scope: Scope) -> Scope:
        headers = dict(scope["headers"])
        scope = dict(scope)
        peer = scope["client"][0]
        client, scheme, _, _ = self.trust.origin(
            peer, headers.get(b"x-forwarded-for"), headers.get(b"x-forwarded-proto"), None,
            headers.get(b"forwarded"))
        if client != peer:
            scope["client"] = (client, 0)
        if scheme is not None:
            scope["scheme"] = scheme
        return scope
