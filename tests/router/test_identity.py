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


def bridge_config(ups: dict) -> str:
    return f"""
ledger: ledger.jsonl
access_log: false
upstreams:
  monolith: {{url: "{ups['a'].url}"}}
  catalog: {{url: "{ups['b'].url}"}}
identity: {{upstream: monolith, path: /api/whoami/, cookie: sessionid, cache_ttl: 5, header_ttl: 60}}
routes:
  - name: products
    match: {{prefix: /api/products}}
    backends: {{catalog: 100}}
    identity: true
  - name: rest
    match: {{prefix: /}}
    backends: {{monolith: 100}}
"""


def test_the_bridge_signs_the_session_user_and_strips_spoofed_headers(upstreams, start_router) -> None:
    import httpx

    from tests.router.conftest import IDENTITY_SECRET

    router = start_router(bridge_config(upstreams))

    def sent(**kw: object) -> dict:
        r = httpx.get(f"{router.url}/api/products/", **kw)  # type: ignore[arg-type]
        assert r.status_code == 200 and r.json()["upstream"] == "b"
        return dict(r.json()["headers"])

    forged = sign({"id": 1, "username": "root", "is_staff": True}, b"guessed", ttl=60).decode()
    # no session: any client copy is stripped and nothing is added
    assert "x-strangler-identity" not in sent(headers={"X-Strangler-Identity": forged})
    # unknown session: the monolith says 401, no header
    assert "x-strangler-identity" not in sent(headers={"Cookie": "sessionid=mallory"})
    # a real session: the router asks the monolith and signs; the forged copy is gone
    headers = sent(headers={"Cookie": "sessionid=alice", "X-Strangler-Identity": forged})
    claims = verify(headers["x-strangler-identity"], IDENTITY_SECRET.encode())
    assert claims is not None and claims["sub"] == "7" and claims["username"] == "alice"
    assert claims["staff"] is False
    staff = verify(sent(headers={"Cookie": "sessionid=bob"})["x-strangler-identity"], IDENTITY_SECRET.encode())
    assert staff is not None and staff["staff"] is True
    # routes without identity never carry it, even with a session
    r = httpx.get(f"{router.url}/other", headers={"Cookie": "sessionid=alice", "X-Strangler-Identity": forged})
    assert "x-strangler-identity" not in dict(r.json()["headers"])


def test_the_catalog_service_accepts_what_the_router_signs() -> None:
    from extracted.kit import identity as catalog

    value = sign({"id": 8, "username": "bob", "is_staff": True}, b"shared", ttl=60, now=1000).decode()
    who = catalog.verify(value, "shared", now=1030)
    assert (who.sub, who.username, who.staff, who.exp) == ("8", "bob", True, 1060)


def test_the_bridge_signs_again_once_a_header_is_a_second_old(monkeypatch) -> None:
    """The signed header is cached with the whoami answer, but its exp never lags now + ttl
    by a second or more, and a new secret is used at once."""
    import asyncio
    from types import SimpleNamespace

    from router import identity as bridge_module
    from router.config import Identity

    bridge = bridge_module.IdentityBridge(SimpleNamespace())  # type: ignore[arg-type]
    asked = []

    async def whoami(snap, session, auth):  # type: ignore[no-untyped-def]
        asked.append(session)
        return {"id": 7, "username": "alice"}

    monkeypatch.setattr(bridge, "_whoami", whoami)
    monkeypatch.setenv("STRANGLER_IDENTITY_SECRET", "one")
    snap = SimpleNamespace(config=SimpleNamespace(identity=Identity(header_ttl=60, cache_ttl=10)))
    clock = [1000.0]
    monkeypatch.setattr(bridge_module.time, "time", lambda: clock[0])

    def header() -> dict:
        value = asyncio.run(bridge.header_for(snap, [], b"sessionid=abc"))  # type: ignore[arg-type]
        assert value is not None
        secret = bridge_module.os.environ["STRANGLER_IDENTITY_SECRET"].encode()
        claims = verify(value.decode(), secret, now=clock[0])
        assert claims is not None
        return claims

    assert header()["exp"] == 1060
    clock[0] = 1000.9
    assert header()["exp"] == 1060  # the same header, not signed again
    clock[0] = 1001.0
    assert header()["exp"] == 1061  # a second old: signed again
    monkeypatch.setenv("STRANGLER_IDENTITY_SECRET", "two")
    header()  # verifies with the new secret
    assert asked == [b"abc"]  # whoami asked once: within cache_ttl
