"""Path normalisation and route matching."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from router.config import parse_config
from router.errors import BadRequest
from router.match import RouteTable, normalise_path


@pytest.mark.parametrize(("raw", "expected"), [
    (b"/api/products", "/api/products"),
    (b"/api//products///1", "/api/products/1"),
    (b"/api/./products/../categories", "/api/categories"),
    (b"/api/%70roducts", "/api/products"),          # unreserved: decoded
    (b"/api/%2e%2e/admin", "/admin"),                # encoded dots are dots
    (b"/a%20b", "/a%20b"),                           # reserved/other: kept, upper-case
    (b"/a%3ab", "/a%3Ab"),
    (b"/../../etc", "/etc"),
    (b"/a/b/", "/a/b/"),
    (b"/a/b/.", "/a/b/"),
    (b"/caf\xc3\xa9", "/caf%C3%A9"),
])
def test_canonical_paths(raw: bytes, expected: str) -> None:
    assert normalise_path(raw) == expected


@pytest.mark.parametrize("raw", [
    b"/api/products%2F..%2Fadmin", b"/a%2fb", b"/a/..%2f", b"/a%5Cb", b"/a\\b", b"/a%00b",
    b"/%zz", b"/a%2", b"relative", b"/a\x01b",
])
def test_ambiguous_or_malformed_paths_are_refused(raw: bytes) -> None:
    with pytest.raises(BadRequest):
        normalise_path(raw)


@given(st.binary(max_size=60))
def test_normalisation_is_idempotent(tail: bytes) -> None:
    try:
        once = normalise_path(b"/" + tail)
    except BadRequest:
        return
    assert normalise_path(once.encode()) == once
    assert "//" not in once and "/./" not in once and "/../" not in once


CONFIG = """
upstreams: {m: {url: "http://127.0.0.1:1"}, c: {url: "http://127.0.0.1:2"}}
routes:
  - {name: all, match: {prefix: /}, backends: {m: 100}}
  - {name: products, match: {prefix: /api/products}, backends: {c: 100}}
  - {name: product-writes, match: {prefix: /api/products, methods: [POST]}, backends: {m: 100}}
  - {name: health, match: {exact: /api/products/health}, backends: {m: 100}}
  - {name: admin-host, match: {prefix: /api, host: admin.example}, backends: {m: 100}}
  - {name: beta, match: {prefix: /api/categories, header: {name: X-Beta, value: "1"}}, backends: {c: 100}}
"""


@pytest.mark.parametrize(("method", "path", "host", "headers", "route"), [
    ("GET", "/api/products", None, [], "products"),
    ("GET", "/api/products/7", None, [], "products"),
    ("GET", "/api/productsX", None, [], "all"),              # segment boundary
    ("POST", "/api/products/7", None, [], "product-writes"),  # methods narrow; first in order
    ("GET", "/api/products/health", None, [], "health"),     # exact beats prefix
    ("GET", "/api/orders", "admin.example:8000", [], "admin-host"),
    ("GET", "/api/categories", None, [(b"x-beta", b"1")], "beta"),
    ("GET", "/api/categories", None, [(b"x-beta", b"0")], "all"),
])
def test_route_table(method: str, path: str, host: str | None, headers: list, route: str) -> None:
    table = RouteTable(parse_config(CONFIG).routes)
    found = table.match(method, path, host, headers)
    assert found is not None and found.name == route
