"""Verify the router's signed identity header (`X-Strangler-Identity`).

The router authenticates the user against the monolith and forwards who they are as
``<payload>.<sig>``: payload is base64url (no padding) of compact JSON
``{"sub": "<user id>", "username": str, "staff": bool, "exp": <unix seconds>}`` and sig is
the hex HMAC-SHA256 of the payload string, keyed with ``STRANGLER_IDENTITY_SECRET``. The
service trusts nothing else about the caller: a missing, forged, expired or malformed
header is 401; a valid one without staff for a staff-only write is 403.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from dataclasses import dataclass

from extracted.kit.errors import NotAuthenticated, PermissionDenied

HEADER = "x-strangler-identity"


@dataclass(frozen=True, kw_only=True)
class Identity:
    """Who the router says the caller is."""

    sub: str
    username: str
    staff: bool
    exp: int


def sign(claims: dict[str, object], secret: str) -> str:
    """The header value for `claims` (the router's side; tests and tools use it too)."""
    raw = json.dumps(claims, separators=(",", ":")).encode()
    payload = base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")
    sig = hmac.new(secret.encode(), payload.encode("ascii"), hashlib.sha256).hexdigest()
    return f"{payload}.{sig}"


def verify(value: str | None, secret: str | None, *, now: float | None = None) -> Identity:
    """The identity in a header value, or `NotAuthenticated` saying why not."""
    if not value:
        raise NotAuthenticated()
    if not secret:
        # Without the shared secret nothing can be verified; refusing is the only safe answer.
        raise NotAuthenticated("Identity verification is not configured on this service.")
    payload, dot, sig = value.partition(".")
    if not dot or not payload or not sig:
        raise NotAuthenticated("Malformed identity.")
    expected = hmac.new(secret.encode(), payload.encode("ascii", "replace"), hashlib.sha256)
    if not hmac.compare_digest(expected.hexdigest().encode(), sig.lower().encode("utf-8", "replace")):
        raise NotAuthenticated("Invalid identity signature.")
    try:
        raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        claims = json.loads(raw)
        identity = Identity(
            sub=str(claims["sub"]),
            username=str(claims["username"]),
            staff=claims["staff"] is True,
            exp=int(claims["exp"]),
        )
    except (binascii.Error, ValueError, KeyError, TypeError) as exc:
        raise NotAuthenticated("Malformed identity.") from exc
    if identity.exp <= (time.time() if now is None else now):
        raise NotAuthenticated("Identity has expired.")
    return identity


def require_staff(value: str | None, secret: str | None) -> Identity:
    """A verified staff identity, or 401/403."""
    identity = verify(value, secret)
    if not identity.staff:
        raise PermissionDenied()
    return identity
