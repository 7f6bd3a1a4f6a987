"""Who the client is when proxies stand in front: `X-Forwarded-*`, `Forwarded` and trusted proxies.

One home for the router (`trusted_proxies:`), the monolith (`MONOLITH_TRUSTED_PROXIES`) and
the catalog (`CATALOG_TRUSTED_PROXIES`); it imports none of them (an import-linter contract).
Each caller translates `ForwardingError` into its own configuration error.

From a trusted peer, `X-Forwarded-For` (else `Forwarded: for=`) is walked from the right,
skipping trusted hops: the first untrusted hop is the client (a client can prepend what it
likes, never append past the proxy); garbage in the chain stops the walk at the last hop
that could be read. The scheme and host are the ones the proxy in front of that hop
reported: the value at the same position when the proxies appended one per hop, else the
one closest to us. Upstream (the router), `X-Forwarded-For` starts with that client (hops a
client could have written are dropped) followed by the trusted proxies, the peer last.
From anyone else, every forwarding header is to be dropped (`HEADERS`, `META_KEYS`).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
HEADERS = frozenset({b"x-forwarded-for", b"x-forwarded-host", b"x-forwarded-proto",
                     b"x-forwarded-port", b"forwarded"})  # lower-case names, as in ASGI
META_KEYS = ("HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_HOST", "HTTP_X_FORWARDED_PROTO",
             "HTTP_X_FORWARDED_PORT", "HTTP_FORWARDED")  # the same, as WSGI/Django names them
_HOST = re.compile(r"^[A-Za-z0-9.\-\[\]:]{1,255}$")
_SCHEMES = frozenset({"http", "https"})
_CACHE_SIZE = 4096


class ForwardingError(ValueError):
    """A trusted-proxy list that cannot be read; the message names the value and the fix."""


def network(text: str) -> Network:
    """`10.0.0.0/8` or an address alone (a /32 or /128); host bits set are refused."""
    try:
        return ipaddress.ip_network(text.strip(), strict=True)
    except ValueError as exc:
        raise ForwardingError(f"{text!r} is not an address or CIDR ({exc})") from exc


def parse_networks(text: str, *, name: str) -> tuple[Network, ...]:
    """`127.0.0.1/32,::1/128` (the variable `name`'s value) → networks."""
    networks = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        try:
            networks.append(network(part))
        except ForwardingError as exc:
            raise ForwardingError(f"{name}={text!r}: {exc}; write e.g. 127.0.0.1/32,10.0.0.0/8") from exc
    return tuple(networks)


class ProxyTrust:
    """The `trusted_proxies` networks, with a small cache of verdicts per peer address."""

    def __init__(self, networks: Sequence[Network]) -> None:
        self.networks = tuple(networks)
        self._verdicts: dict[str, bool] = {}

    def trusts(self, address: str) -> bool:
        verdict = self._verdicts.get(address)
        if verdict is None:
            ip = _address(address)
            verdict = ip is not None and any(ip in net for net in self.networks)
            if len(self._verdicts) >= _CACHE_SIZE:
                self._verdicts.clear()
            self._verdicts[address] = verdict
        return verdict

    def origin(self, peer: str, xff: bytes | None, proto: bytes | None, host: bytes | None,
               forwarded: bytes | None) -> tuple[str, str | None, str | None, bytes]:
        """(client address, scheme or None, host or None, X-Forwarded-For to send upstream)
        for a request that came from the trusted proxy `peer`."""
        if xff is not None:
            hops = [h.strip() for h in xff.decode("latin-1").split(",")]
            protos = _values(proto)
            hosts = _values(host)
        elif forwarded is not None:
            elements = _forwarded(forwarded)
            hops = [e.get("for", "") for e in elements]
            protos = [e.get("proto", "") for e in elements]
            hosts = [e.get("host", "") for e in elements]
        else:  # only -Proto/-Host: the proxy's own view of the client's connection
            hops, protos, hosts = [], _values(proto), _values(host)
        at = self._first_untrusted(hops)
        client = _bare(hops[at]) if at >= 0 else peer
        scheme = _aligned(protos, hops, at)
        chain = [client, *(_bare(h) for h in hops[at + 1:]), peer] if at >= 0 else [peer]
        return (client, scheme.lower() if scheme and scheme.lower() in _SCHEMES else None,
                _aligned(hosts, hops, at), ", ".join(chain).encode("latin-1"))

    def client(self, xff: str) -> str | None:
        """The client named by a trusted peer's `X-Forwarded-For` (None: no usable hop)."""
        hops = [h.strip() for h in xff.split(",")] if xff.strip() else []
        at = self._first_untrusted(hops)
        return _bare(hops[at]) if at >= 0 else None

    def _first_untrusted(self, hops: list[str]) -> int:
        """Index of the client's hop (walking from the right); -1 if no hop is usable."""
        found = -1
        for i in range(len(hops) - 1, -1, -1):
            address = _bare(hops[i])
            if _address(address) is None:
                break  # garbage in the chain: keep the last hop we could read
            found = i
            if not self.trusts(address):
                break
        return found


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _bare(hop: str) -> str:
    """An address without brackets or port: `[::1]:80` → `::1`, `1.2.3.4:5` → `1.2.3.4`."""
    hop = hop.strip().strip('"')
    if hop.startswith("["):
        return hop[1:hop.find("]")] if "]" in hop else hop
    if hop.count(":") == 1:
        return hop.partition(":")[0]
    return hop


def _values(header: bytes | None) -> list[str]:
    return [v.strip() for v in header.decode("latin-1").split(",")] if header else []


def _aligned(values: list[str], hops: list[str], at: int) -> str | None:
    # One value per hop (each proxy appended): the one describing the client's hop.
    # Otherwise (proxies overwrite): the value closest to us.
    if not values:
        return None
    value = values[at] if at >= 0 and len(values) == len(hops) else values[-1]
    return value if value and _HOST.match(value) else None


def _forwarded(header: bytes) -> list[dict[str, str]]:
    """RFC 7239 elements, e.g. `for=1.2.3.4;proto=https, for="[::1]"` → [{for, proto}, {for}]."""
    elements = []
    for element in header.decode("latin-1").split(","):
        pairs: dict[str, str] = {}
        for pair in element.split(";"):
            name, sep, value = pair.partition("=")
            if sep:
                pairs[name.strip().lower()] = value.strip().strip('"')
        elements.append(pairs)
    return elements


__all__ = ["HEADERS", "META_KEYS", "ForwardingError", "Network", "ProxyTrust", "network", "parse_networks"]
