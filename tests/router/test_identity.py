"""The identity header format (the contract services verify)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

from router.identity import sign, verify

SECRET = b"s3cret"


def test_header_format_matches_the_contract() -> None:
    value = sign({"id": 7, "username": "alice", "is_staff": False}, SECRET, ttl=60, now=1000).decode()
    payload, sig = value.split(".")
    assert "=" not in payload
    assert json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))) == \
        {"sub": "7", "username": "alice", "staff": False, "exp": 1060}
    assert sig == hmac.new(SECRET, payload.encode(), hashlib.sha256).hexdigest()
    assert verify(value, SECRET, now=1059) == {"sub": "7", "username": "alice", "staff": False, "exp": 1060}


def test_forged_expired_or_malformed_values_do_not_verify() -> None:
    value = sign({"id": 7, "username": "alice", "is_staff": False}, SECRET, ttl=60, now=1000).decode()
    assert verify(value, SECRET, now=1061) is None
    assert verify(value, b"other", now=1000) is None
    payload, sig = value.split(".")
    forged = base64.urlsafe_b64encode(b'{"sub":"1","username":"root","staff":true,"exp":9999}').rstrip(b"=")
    assert verify(forged.decode() + "." + sig, SECRET, now=1000) is None
    assert verify("garbage", SECRET) is None
