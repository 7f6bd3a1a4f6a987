"""The identity bridge: the monolith's session → a short-lived signed identity header.

Place in the flow: for routes with `identity: true`, before forwarding, the router asks the
monolith who the session belongs to (`GET /api/whoami/` with the client's cookie and
Authorization header), caches the answer for `cache_ttl` seconds, and forwards

    X-Strangler-Identity: <payload>.<sig>

payload = base64url (no padding) of compact JSON {"sub", "username", "staff", "exp"}, sig =
hex HMAC-SHA256 of the payload string with STRANGLER_IDENTITY_SECRET. Services verify it
(see `verify` for the reference check). A client-supplied copy is always stripped by the
proxy, on every route. Anonymous or unresolvable sessions get no header (the service
answers 401 for protected operations).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
from typing import TYPE_CHECKING, Any

from router.client import fetch
from router.config import IDENTITY_SECRET_ENV
from router.errors import UpstreamError

if TYPE_CHECKING:
    from router.state import Snapshot
    from router.types import RouterCore as Router

_CACHE_MAX = 10_000


def sign(user: dict[str, Any], secret: bytes, *, ttl: int, now: float | None = None) -> bytes:
    """The header value for a user {"id", "username", "is_staff"}."""
    exp = int((now if now is not None else time.time()) + ttl)
    payload = json.dumps({"sub": str(user["id"]), "username": user["username"],
                          "staff": bool(user.get("is_staff", False)), "exp": exp},
                         separators=(",", ":")).encode()
    encoded = base64.urlsafe_b64encode(payload).rstrip(b"=")
    sig = hmac.new(secret, encoded, hashlib.sha256).hexdigest().encode()
    return encoded + b"." + sig


def verify(value: str, secret: bytes, *, now: float | None = None) -> dict[str, Any] | None:
    """The claims of a valid, unexpired header value; None if missing, forged or expired."""
    payload, sep, sig = value.partition(".")
    if not sep:
        return None
    expected = hmac.new(secret, payload.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, sig):
        return None
    try:
        claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except ValueError:
        return None
    if claims.get("exp", 0) < (now if now is not None else time.time()):
        return None
    return claims


class _Known:
    __slots__ = ("expires", "user", "signed", "exp", "secret")

    def __init__(self, expires: float, user: dict[str, Any] | None) -> None:
        self.expires, self.user = expires, user
        self.signed: bytes | None = None
        self.exp = 0
        self.secret = b""


class IdentityBridge:
    def __init__(self, router: Router) -> None:
        self.router = router
        # credential digest → what whoami said (None: anonymous) until `expires`, and the
        # header signed for it: signed again once it is a second old, not per request.
        self._cache: dict[bytes, _Known] = {}

    async def header_for(self, snap: Snapshot, headers: list[tuple[bytes, bytes]],
                         cookie: bytes | None) -> bytes | None:
        config = snap.config
        ident = config.identity
        secret = os.environ.get(IDENTITY_SECRET_ENV, "").encode()
        if ident is None or not secret:
            return None
        session = None
        if cookie is not None:
            wanted = ident.cookie.encode()
            for part in cookie.split(b";"):
                k, sep, v = part.strip().partition(b"=")
                if sep and k == wanted:
                    session = v
        auth = None
        for k, v in headers:
            if k == b"authorization":
                auth = v
                break
        if session is None and auth is None:
            return None
        key = hashlib.sha256(b"%s\x00%s" % (session or b"", auth or b"")).digest()
        now = time.monotonic()
        known = self._cache.get(key)
        if known is None or known.expires <= now:
            user = await self._whoami(snap, session, auth)
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()
            known = self._cache[key] = _Known(now + ident.cache_ttl, user)
        if known.user is None:
            return None
        wall = time.time()
        if known.signed is None or wall + ident.header_ttl - known.exp >= 1 or known.secret != secret:
            known.exp = int(wall + ident.header_ttl)
            known.signed = sign(known.user, secret, ttl=ident.header_ttl, now=wall)
            known.secret = secret
        return known.signed

    async def _whoami(self, snap: Snapshot, session: bytes | None, auth: bytes | None) -> dict[str, Any] | None:
        ident = snap.config.identity
        assert ident is not None
        upstream = snap.config.upstreams[ident.upstream]
        target = snap.groups[ident.upstream].any_healthy()  # one of its endpoints that is up
        pool = target.pool
        head = [b"GET %b HTTP/1.1\r\nhost: %b\r\n" % (ident.path.encode(), target.authority),
                b"accept: application/json\r\n"]
        if session is not None:
            head.append(b"cookie: " + ident.cookie.encode() + b"=" + session + b"\r\n")
        if auth is not None:
            head.append(b"authorization: " + auth + b"\r\n")
        head.append(b"\r\n")
        try:
            status, _, body = await fetch(pool, b"".join(head), connect_timeout=upstream.connect_timeout,
                                          read_timeout=upstream.read_timeout, limit=64 * 1024)
        except UpstreamError:
            return None  # the monolith is down: forward without identity (the service says 401)
        if status != 200:
            return None
        try:
            user = json.loads(body)
            if not isinstance(user, dict) or "id" not in user or "username" not in user:
                return None
            return user
        except ValueError:
            return None
