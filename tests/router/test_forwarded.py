"""Behind a load balancer (issue 15): trusted_proxies and the anonymous cohort cookie.

The splits are deterministic: the cohort hash is, and every key (address or cookie) is
fixed, so each request's backend is checked against `balance.choose` for its key.
"""

from __future__ import annotations

import ipaddress
from collections import Counter

import httpx
import pytest

from router import balance
from tests.router.conftest import RouterProc, raw_request

SPLIT = [("a", 70), ("b", 30)]


def routes(ups: dict, top: str) -> str:
    return f"""
ledger: ledger.jsonl
access_log: false
{top}
upstreams:
  a: {{url: "{ups['a'].url}"}}
  b: {{url: "{ups['b'].url}"}}
routes:
  - name: split
    match: {{prefix: /split}}
    backends: {{a: 70, b: 30}}
    cohort: {{header: X-User}}
  - name: default
    match: {{prefix: /}}
    backends: {{a: 100}}
"""


def echo(router: RouterProc, path: str, headers: dict[str, str]) -> dict[str, str]:
    """The headers the upstream received, as a dict (raw socket: nothing added by a client)."""
    lines = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    answer = raw_request(router.port, f"GET {path} HTTP/1.1\r\nHost: shop.test\r\n{lines}\r\n".encode())
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), answer[:300]
    return {k: v for k, v in httpx.Response(200, content=body).json()["headers"]}


SPOOF = {"X-Forwarded-For": "6.6.6.6", "X-Forwarded-Proto": "https",
         "X-Forwarded-Host": "evil.example", "Forwarded": "for=6.6.6.6;proto=https;host=evil.example"}


def test_forwarding_headers_from_an_untrusted_address_are_ignored(upstreams, start_router, http: str) -> None:
    router = start_router(routes(upstreams, "trusted_proxies: [10.0.0.0/8]"), http=http)
    sent = echo(router, "/echo", SPOOF)
    assert sent["x-forwarded-for"] == "127.0.0.1"
    assert sent["x-forwarded-proto"] == "http"
    assert sent["x-forwarded-host"] == "shop.test"
    assert "forwarded" not in sent


@pytest.mark.parametrize("told", [
    {"X-Forwarded-For": "6.6.6.6, 203.0.113.7, 10.1.2.3", "X-Forwarded-Proto": "https",
     "X-Forwarded-Host": "shop.example"},
    {"Forwarded": 'for=6.6.6.6, for=203.0.113.7;proto=https;host=shop.example, for="10.1.2.3:4711"'},
], ids=["x-forwarded", "forwarded"])
def test_from_a_trusted_proxy_the_first_untrusted_hop_is_the_client(
        upstreams, start_router, http: str, told: dict[str, str]) -> None:
    router = start_router(routes(upstreams, "trusted_proxies: [127.0.0.1, 10.0.0.0/8]"), http=http)
    sent = echo(router, "/echo", told)
    # 6.6.6.6 is what the client wrote itself: dropped; 10.1.2.3 is a trusted hop.
    assert sent["x-forwarded-for"] == "203.0.113.7, 10.1.2.3, 127.0.0.1"
    assert sent["x-forwarded-proto"] == "https"
    assert sent["x-forwarded-host"] == "shop.example"


def test_70_30_split_of_clients_behind_one_proxy_follows_their_addresses(
        upstreams, start_router, http: str) -> None:
    router = start_router(routes(upstreams, "trusted_proxies: [127.0.0.1/32]\nanonymous_cohort: null"),
                          http=http)
    addresses = [str(ipaddress.ip_address("198.51.100.0") + i) for i in range(200)]
    counts: Counter[str] = Counter()
    with router.client() as client:
        for round_ in range(2):
            for address in addresses:
                r = client.get("/split/x", headers={"X-Forwarded-For": address})
                backend = r.headers["x-strangler-backend"]
                assert backend == balance.choose(SPLIT, salt="split", key=address), address
                if round_ == 0:
                    counts[backend] += 1
    assert 0.2 < counts["b"] / len(addresses) < 0.4, counts  # today: all one address, 200/0


def test_anonymous_visitors_get_a_sticky_cohort_cookie(upstreams, start_router, http: str) -> None:
    router = start_router(routes(upstreams, "anonymous_cohort: {cookie: visitor, max_age: 600}"), http=http)
    with router.client() as client:
        first = client.get("/split/x")
        cookie = first.headers["set-cookie"]
        assert cookie.startswith("visitor=") and "Max-Age=600" in cookie and "HttpOnly" in cookie
        key = cookie.split(";")[0].partition("=")[2]
        assert first.headers["x-strangler-backend"] == balance.choose(SPLIT, salt="split", key=key)
        for _ in range(5):  # sent back (httpx keeps it): the same backend, no new cookie
            again = client.get("/split/x")
            assert again.headers["x-strangler-backend"] == first.headers["x-strangler-backend"]
            assert "set-cookie" not in again.headers
    # A user key, or a route that does not split: no cookie.
    assert "set-cookie" not in httpx.get(f"{router.url}/split/x", headers={"X-User": "u1"}).headers
    assert "set-cookie" not in httpx.get(f"{router.url}/other").headers
    # Many anonymous visitors, one address (all from the same proxy): split by their cookies.
    counts: Counter[str] = Counter()
    with httpx.Client(base_url=router.url, timeout=30) as client:
        for i in range(200):
            key = f"visitor-{i}"
            r = client.get("/split/x", headers={"Cookie": f"visitor={key}"})
            assert r.headers["x-strangler-backend"] == balance.choose(SPLIT, salt="split", key=key)
            counts[r.headers["x-strangler-backend"]] += 1
    assert 0.2 < counts["b"] / 200 < 0.4, counts


def test_proxy_trust_walks_from_the_right() -> None:
    from forwarding import ProxyTrust

    trust = ProxyTrust([ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("::1/128")])
    assert trust.trusts("10.2.3.4") and trust.trusts("::1") and not trust.trusts("11.0.0.1")
    assert not trust.trusts("not an address")
    # All hops trusted: the leftmost is the client.
    assert trust.origin("10.0.0.1", b"10.9.9.9, 10.8.8.8", None, None, None)[0] == "10.9.9.9"
    # Garbage to the left of a real hop: the real hop stands.
    assert trust.origin("10.0.0.1", b"<script>, 192.0.2.1", None, None, None)[0] == "192.0.2.1"
    # Garbage as the nearest hop: the proxy itself is all we know.
    client, _, _, chain = trust.origin("10.0.0.1", b"192.0.2.1, junk", None, None, None)
    assert (client, chain) == ("10.0.0.1", b"10.0.0.1")
    # An unknown scheme is ignored; ports and brackets are stripped.
    client, scheme, host, _ = trust.origin("::1", None, None, None, b'for="[2001:db8::7]:80";proto=gopher')
    assert (client, scheme, host) == ("2001:db8::7", None, None)
    # Per-hop values (each proxy appended): the client hop's own.
    assert trust.origin("10.0.0.1", b"192.0.2.1, 10.5.5.5", b"https, http", None, None)[1] == "https"
