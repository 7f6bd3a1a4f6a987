"""Forwarding headers are believed only from the router: `MONOLITH_TRUSTED_PROXIES`.

`USE_X_FORWARDED_HOST` makes Django build absolute URLs (pagination links) from
`X-Forwarded-Host`; anyone who reaches the monolith directly could otherwise poison them.
This middleware runs first: from a trusted address (default: loopback, where the router
runs in the stack) `X-Forwarded-For` gives `REMOTE_ADDR` (walked from the right, skipping
trusted hops) and `X-Forwarded-Host`/`-Proto` stand; from anyone else they are removed.
The server must not rewrite the peer address itself (`serve` runs uvicorn with
`proxy_headers=False`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
FORWARDED_META = ("HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_HOST", "HTTP_X_FORWARDED_PROTO",
                  "HTTP_X_FORWARDED_PORT", "HTTP_FORWARDED")


def parse_networks(text: str, *, name: str = "MONOLITH_TRUSTED_PROXIES") -> tuple[Network, ...]:
    """`127.0.0.1/32,::1/128` → networks (an address alone is a /32 or /128)."""
    networks = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        try:
            networks.append(ipaddress.ip_network(part))
        except ValueError as exc:
            raise ImproperlyConfigured(f"{name}={text!r}: {part!r} is not an address or CIDR "
                                       f"({exc}); write e.g. 127.0.0.1/32,10.0.0.0/8") from exc
    return tuple(networks)


class TrustedProxyMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.networks = parse_networks(settings.TRUSTED_PROXIES)

    def __call__(self, request: HttpRequest) -> HttpResponse:
        meta = request.META
        if self._trusted(meta.get("REMOTE_ADDR", "")):
            client = self._client(meta.get("HTTP_X_FORWARDED_FOR", ""))
            if client:
                meta["REMOTE_ADDR"] = client
        else:
            for key in FORWARDED_META:
                meta.pop(key, None)
        return self.get_response(request)

    def _trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self.networks)

    def _client(self, xff: str) -> str | None:
        """The first untrusted hop from the right (the leftmost if all are trusted)."""
        client = None
        for hop in reversed([h.strip() for h in xff.split(",") if h.strip()]):
            client = hop
            if not self._trusted(hop):
                break
        return client
