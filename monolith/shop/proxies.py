"""Forwarding headers are believed only from the router: `MONOLITH_TRUSTED_PROXIES`.

`USE_X_FORWARDED_HOST` makes Django build absolute URLs (pagination links) from
`X-Forwarded-Host`; anyone who reaches the monolith directly could otherwise poison them.
This middleware runs first: from a trusted address (default: loopback, where the router
runs in the stack) `X-Forwarded-For` gives `REMOTE_ADDR` (the router's walk, shared in
`forwarding`) and `X-Forwarded-Host`/`-Proto` stand; from anyone else they are removed.
The server must not rewrite the peer address itself (`serve` runs uvicorn with
`proxy_headers=False`).
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse

import forwarding

FORWARDED_META = forwarding.META_KEYS


def parse_networks(text: str, *, name: str = "MONOLITH_TRUSTED_PROXIES") -> tuple[forwarding.Network, ...]:
    """`127.0.0.1/32,::1/128` → networks (an address alone is a /32 or /128)."""
    try:
        return forwarding.parse_networks(text, name=name)
    except forwarding.ForwardingError as exc:
        raise ImproperlyConfigured(str(exc)) from exc


class TrustedProxyMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.trust = forwarding.ProxyTrust(parse_networks(settings.TRUSTED_PROXIES))

    def __call__(self, request: HttpRequest) -> HttpResponse:
        meta = request.META
        if self.trust.trusts(meta.get("REMOTE_ADDR", "")):
            client = self.trust.client(meta.get("HTTP_X_FORWARDED_FOR", ""))
            if client:
                meta["REMOTE_ADDR"] = client
        else:
            for key in FORWARDED_META:
                meta.pop(key, None)
        return self.get_response(request)
