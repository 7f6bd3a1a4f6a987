"""Forwarding headers are believed only from the router: `CATALOG_TRUSTED_PROXIES`.

Pagination links name the host in `X-Forwarded-Host` (so `next` leads back through the
router); anyone reaching the service directly could otherwise poison them. From a trusted
peer (default: loopback, where the router runs in the stack) `X-Forwarded-For` gives the
client address (walked from the right, skipping trusted hops) and `X-Forwarded-Proto` the
scheme, and `X-Forwarded-Host` stands; from anyone else all of them are removed. The server
must not rewrite the peer itself (`__main__` runs uvicorn with `proxy_headers=False`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from starlette.types import ASGIApp, Receive, Scope, Send

from extracted.catalog.errors import ConfigError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
FORWARDED = frozenset({b"x-forwarded-for", b"x-forwarded-host", b"x-forwarded-proto",
                       b"x-forwarded-port", b"forwarded"})


def parse_networks(text: str, *, name: str = "CATALOG_TRUSTED_PROXIES") -> tuple[Network, ...]:
    """`127.0.0.1/32,::1/128` → networks (an address alone is a /32 or /128)."""
    networks = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        try:
            networks.append(ipaddress.ip_network(part))
        except ValueError as exc:
            raise ConfigError(f"{name}={text!r}: {part!r} is not an address or CIDR ({exc}); "
                              "write e.g. 127.0.0.1/32,10.0.0.0/8") from exc
    return tuple(networks)


class TrustedProxyMiddleware:
    """Outermost: the trust decision is made on the socket's peer address."""

    def __init__(self, app: ASGIApp, *, networks: Sequence[Network]) -> None:
        self.app = app
        self.networks = tuple(networks)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            client = scope.get("client")
            if client and self._trusted(client[0]):
                scope = self._believe(scope)
            elif any(name in FORWARDED for name, _ in scope["headers"]):
                scope = {**scope, "headers": [(n, v) for n, v in scope["headers"] if n not in FORWARDED]}
        await self.app(scope, receive, send)

    def _trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self.networks)

    def _believe(self, scope: Scope) -> Scope:
        headers = dict(scope["headers"])
        scope = dict(scope)
        hops = [h.strip() for h in headers.get(b"x-forwarded-for", b"").decode("latin-1").split(",") if h.strip()]
        for hop in reversed(hops):
            scope["client"] = (hop, 0)
            if not self._trusted(hop):
                break
        proto = headers.get(b"x-forwarded-proto", b"").decode("latin-1").split(",")[-1].strip().lower()
        if proto in ("http", "https"):
            scope["scheme"] = proto
        return scope
