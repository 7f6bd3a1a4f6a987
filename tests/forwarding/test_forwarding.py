"""forwarding: the one trusted-proxy walk the router, the monolith and the catalog share."""

from __future__ import annotations

import pytest

import forwarding
from forwarding import ForwardingError, ProxyTrust, parse_networks


def test_the_walk_from_the_right_skips_trusted_hops_and_stops_at_garbage() -> None:
    trust = ProxyTrust(parse_networks("127.0.0.1, 10.0.0.0/8", name="X"))
    assert trust.client("6.6.6.6, 203.0.113.7, 10.1.1.1, 127.0.0.1") == "203.0.113.7"
    assert trust.client("10.9.9.9, 10.8.8.8") == "10.9.9.9"  # all trusted: the leftmost
    assert trust.client("<script>, 192.0.2.1") == "192.0.2.1"  # garbage never becomes the client
    assert trust.client("192.0.2.1, junk") is None  # nothing readable next to us: keep the peer
    assert trust.client("[2001:db8::7]:443, 192.0.2.1:5555") == "192.0.2.1"  # ports dropped
    assert trust.client("") is None and trust.client(" , ") is None


def test_the_router_and_the_services_agree_on_the_client() -> None:
    # One walk: what the router computes for cohorts and logs is what the monolith and the
    # catalog set as the client address.
    from extracted.kit.proxies import TrustedProxyMiddleware as Catalog

    trust = ProxyTrust(parse_networks("127.0.0.1", name="X"))
    catalog = Catalog(lambda *a: None, networks=trust.networks)  # type: ignore[arg-type]
    for xff in (b"6.6.6.6, 203.0.113.7, 127.0.0.1", b"<x>, 198.51.100.2", b"127.0.0.1, 127.0.0.1"):
        router_view = trust.origin("127.0.0.1", xff, None, None, None)[0]
        scope = catalog._believe({"type": "http", "client": ("127.0.0.1", 1), "scheme": "http",
                                  "headers": [(b"x-forwarded-for", xff)]})
        assert scope["client"][0] == router_view == (trust.client(xff.decode()) or "127.0.0.1"), xff


def test_a_list_that_cannot_be_read_names_the_variable_and_the_fix() -> None:
    with pytest.raises(ForwardingError, match=r"SOME_PROXIES='127.0.0.1, nope': 'nope' is not an "
                       r"address or CIDR .*; write e\.g\. 127\.0\.0\.1/32,10\.0\.0\.0/8"):
        parse_networks("127.0.0.1, nope", name="SOME_PROXIES")
    with pytest.raises(ForwardingError, match="has host bits set"):
        forwarding.network("10.0.0.1/8")
    assert parse_networks(" 127.0.0.1/32 ,, ::1 ", name="X") == (
        forwarding.network("127.0.0.1/32"), forwarding.network("::1/128"))


def test_the_header_names_match_their_wsgi_spelling() -> None:
    assert sorted(forwarding.META_KEYS) == sorted(
        "HTTP_" + h.decode().upper().replace("-", "_") for h in forwarding.HEADERS)
