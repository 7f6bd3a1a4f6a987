"""Request → route: one canonical path normalisation, then exact > longest prefix > narrower > file order.

Place in the flow: the first step of every request. The same normalised path is used for
matching *and* forwarding, so the router and the upstream never disagree about which route
a path belongs to. Normalisation: a `#fragment` dropped, percent-decoding of unreserved characters (and upper-case
hex for the rest), duplicate slashes collapsed, dot segments removed (RFC 3986 5.2.4).
Encodings that could smuggle a path past a route — `%2F`, `%5C`, a raw backslash, control
characters, malformed `%` escapes — are refused with 400 rather than guessed at.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from router.config import Route
from router.errors import BadRequest

_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_HEX = frozenset(b"0123456789abcdefABCDEF")
# Decoded, these would change how the path splits into segments (or end it): refuse.
# Paths made only of these characters (no '%', '\\', controls, non-ASCII) need no decoding.
_PLAIN = re.compile(rb"/[A-Za-z0-9\-._~!$&'()*+,;=:@/]*\Z")
_SMUGGLERS = frozenset({0x2F, 0x5C} | set(range(0x20)) | {0x7F})


def normalise_path(raw: bytes) -> str:
    """The canonical form of a raw request path (no query string); BadRequest if ambiguous."""
    if _PLAIN.match(raw) and b"//" not in raw and b"/." not in raw:
        return raw.decode("ascii")  # the common case: already canonical
    if b"#" in raw:
        # A fragment is not part of a request target (RFC 9110 §4.2.1); upstreams drop it,
        # so the router drops it too before matching: both see the same path.
        return normalise_path(raw[:raw.index(b"#")] or b"/")
    if raw[:1] != b"/":
        raise BadRequest("the request path must start with '/'")
    out = bytearray()
    i, n = 0, len(raw)
    while i < n:
        c = raw[i]
        if c == 0x25:  # '%'
            if i + 2 >= n or raw[i + 1] not in _HEX or raw[i + 2] not in _HEX:
                raise BadRequest("malformed percent-encoding in the request path")
            value = int(raw[i + 1:i + 3], 16)
            if value in _SMUGGLERS:
                raise BadRequest(f"encoded character %{value:02X} is not allowed in the path "
                                 "(it could hide a path from the routing table)")
            if value in _UNRESERVED:
                out.append(value)
            else:
                out += b"%%%02X" % value
            i += 3
            continue
        if c == 0x5C or c < 0x21 or c == 0x7F:
            raise BadRequest("backslashes and control characters are not allowed in the path")
        if c > 0x7F:
            out += b"%%%02X" % c
        else:
            out.append(c)
        i += 1
    return _remove_dot_segments(out.decode("ascii"))


def _remove_dot_segments(path: str) -> str:
    segments = path.split("/")
    out: list[str] = []
    for seg in segments[1:]:
        if seg == "..":
            if out:
                out.pop()
        elif seg not in (".", ""):
            out.append(seg)
    if not out:
        return "/"
    trailing = "/" if segments[-1] in ("", ".", "..") else ""
    return "/" + "/".join(out) + trailing


def match_order(routes: Sequence[Route]) -> list[Route]:
    """The order routes are tried in: exact paths (file order), then prefixes longest
    first, then routes narrowed by methods/host/header before plain ones, then file order.
    The first that fits a request is its route (dataplane/ renders this order for nginx
    and HAProxy, so they pick the route the router would)."""
    exact = [r for r in routes if r.match.exact is not None]
    prefixed: list[tuple[int, int, int, Route]] = []
    for order, route in enumerate(routes):
        if route.match.exact is None:
            m = route.match
            narrowing = (m.methods is not None) + (m.host is not None) + (m.header is not None)
            prefixed.append((-len(m.prefix or ""), -narrowing, order, route))
    prefixed.sort(key=lambda t: t[:3])
    return exact + [r for *_, r in prefixed]


def prefix_forms(prefix: str) -> tuple[str, str]:
    """`/api/products` matches itself and `/api/products/...`, never `/api/productsX`."""
    if prefix.endswith("/"):
        return prefix.rstrip("/") or "/", prefix
    return prefix, prefix + "/"


class RouteTable:
    """Routes ordered for matching (`match_order`), exact paths looked up first."""

    def __init__(self, routes: Sequence[Route]) -> None:
        self._exact: dict[str, list[Route]] = {}
        self._prefixes: list[tuple[tuple[str, str], Route]] = []
        for route in match_order(routes):
            if route.match.exact is not None:
                self._exact.setdefault(route.match.exact, []).append(route)
            else:
                self._prefixes.append((prefix_forms(route.match.prefix or "/"), route))

    def match(self, method: str, path: str, host: str | None,
              headers: Iterable[tuple[bytes, bytes]]) -> Route | None:
        """The route for a request, or None when nothing matches."""
        for route in self._exact.get(path, ()):
            if _fits(route, method, host, headers):
                return route
        for (whole, with_slash), route in self._prefixes:
            if (path == whole or path.startswith(with_slash)) and _fits(route, method, host, headers):
                return route
        return None


def _fits(route: Route, method: str, host: str | None,
          headers: Iterable[tuple[bytes, bytes]]) -> bool:
    m = route.match
    if m.methods is not None and method not in m.methods:
        return False
    if m.host is not None and (host or "").split(":")[0].lower() != m.host:
        return False
    if m.header is not None:
        name, value = m.header
        wanted = name.encode("latin-1")
        for k, v in headers:
            if k == wanted and (value is None or v.decode("latin-1") == value):
                return True
        return False
    return True
