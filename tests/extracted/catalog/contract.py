"""The catalog contract: which requests, how answers are compared, and what may differ.

INTENDED_DIFFERENCES is the one place that lists where the service answers differently
from the monolith on purpose; `compare()` allows exactly those and nothing else.
"""

from __future__ import annotations

from typing import Any

import httpx
from hypothesis import strategies as st

INTENDED_DIFFERENCES = {
    "tie order": (
        "Rows that tie on the requested ordering (e.g. ?ordering=price, or name) come in "
        "id order from the service (id is always the last sort key, so pages never overlap "
        "or skip); the monolith leaves their order to the database. Compared as: the same "
        "sequence of sort keys, the same rows inside each tie group that the page holds "
        "whole, and every row identical to the monolith's row with the same id."
    ),
    "response headers": (
        "Only status, Content-Type and the JSON body are contract. Django's headers (Vary, "
        "Allow, X-Frame-Options, Cross-Origin-Opener-Policy...) are not sent by the service; "
        "the service adds X-Request-ID."
    ),
    "price filters": (
        "min_price/max_price are compared exactly in integer cents; the monolith on SQLite "
        "compares floats, which differs only for values with more than ~15 significant "
        "digits (not generated here)."
    ),
    "non-JSON 404s": (
        "A path the monolith's URLconf does not match at all (e.g. /api/products/1.5/) is "
        "Django's HTML 404 page there and a JSON 404 here; the status is the same."
    ),
    "OPTIONS and missing slashes": (
        "OPTIONS (DRF's metadata answer) is a 405 here; a path without its trailing slash "
        "is redirected with 307 here and 301 by Django's APPEND_SLASH (same Location)."
    ),
    "writes": (
        "Product writes are authorised by the router's identity header, not by the "
        "monolith's session/token (tested separately); category writes stay with the "
        "monolith (the service answers 405). Successful writes (create, PATCH, PUT, DELETE, "
        "and the price history they leave) answer the same status and body except the new "
        "row's id (the service allocates from 1e9) and write times."
    ),
}

# A fixed list: every feature of the list/detail/category endpoints, good and bad input.
FIXED_REQUESTS: list[tuple[str, dict[str, str]]] = [
    ("/api/products/", {}),
    ("/api/products/", {"page": "2"}),
    ("/api/products/", {"page": "last"}),
    ("/api/products/", {"page": "0"}),
    ("/api/products/", {"page": "999"}),
    ("/api/products/", {"page": "abc"}),
    ("/api/products/", {"page": ""}),
    ("/api/products/", {"page_size": "7", "page": "3"}),
    ("/api/products/", {"page_size": "1000"}),
    ("/api/products/", {"page_size": "0"}),
    ("/api/products/", {"page_size": "x", "page": "2"}),
    ("/api/products/", {"category": "3"}),
    ("/api/products/", {"category": "999"}),
    ("/api/products/", {"category": "abc"}),
    ("/api/products/", {"min_price": "10", "max_price": "50"}),
    ("/api/products/", {"min_price": "10.005", "max_price": "50.5"}),
    ("/api/products/", {"min_price": "abc", "max_price": "NaN", "category": "x"}),
    ("/api/products/", {"max_price": "1e51"}),
    ("/api/products/", {"min_price": "1e2"}),
    ("/api/products/", {"in_stock": "true"}),
    ("/api/products/", {"in_stock": "false"}),
    ("/api/products/", {"in_stock": "yes"}),
    ("/api/products/", {"is_active": "false"}),
    ("/api/products/", {"is_active": "True"}),
    ("/api/products/", {"search": "oak"}),
    ("/api/products/", {"search": "Oak Chair"}),
    ("/api/products/", {"search": '"oak chair"'}),
    ("/api/products/", {"search": "oak,steel"}),
    ("/api/products/", {"search": "item 000042"}),
    ("/api/products/", {"search": "%"}),
    ("/api/products/", {"search": "_"}),
    ("/api/products/", {"search": "zzz"}),
    ("/api/products/", {"search": "\x00"}),
    ("/api/products/", {"ordering": "-price"}),
    ("/api/products/", {"ordering": "name,-id"}),
    ("/api/products/", {"ordering": "bogus"}),
    ("/api/products/", {"ordering": "-stock_count,price"}),
    ("/api/products/", {"ordering": "created_at", "page": "2"}),
    ("/api/products/", {"ordering": "--price"}),
    ("/api/products/", {"category": "2", "min_price": "5", "search": "steel", "ordering": "-price", "page_size": "3"}),
    ("/api/products/1/", {}),
    ("/api/products/200/", {}),
    ("/api/products/201/", {}),
    ("/api/products/abc/", {}),
    ("/api/products/0/", {}),
    ("/api/products/99999999999/", {}),
    ("/api/products/7/", {"category": "999"}),
    ("/api/products/7/", {"search": "zzz"}),
    ("/api/products/7/", {"min_price": "x"}),
    ("/api/products/abc/", {"min_price": "x"}),
    ("/api/products/1/price-history/", {}),
    ("/api/products/1/price-history/", {"page_size": "2", "page": "2"}),
    ("/api/products/1/price-history/", {"page": "9"}),
    ("/api/products/2/price-history/", {}),
    ("/api/products/7/price-history/", {"in_stock": "true"}),
    ("/api/products/9999/price-history/", {}),
    ("/api/products/x/price-history/", {}),
    ("/api/categories/", {}),
    ("/api/categories/", {"page_size": "5", "page": "2"}),
    ("/api/categories/", {"parent": "1"}),
    ("/api/categories/", {"parent": "999"}),
    ("/api/categories/", {"search": "kitchen"}),
    ("/api/categories/", {"ordering": "-name"}),
    ("/api/categories/1/", {}),
    ("/api/categories/999/", {}),
    ("/api/categories/x/", {}),
    ("/api/categories/3/", {"parent": "1"}),
    ("/api/categories/3/", {"parent": "abc"}),
]

ORDER_FIELDS = ["id", "name", "price", "created_at", "stock_count", "bogus"]
SEARCH_WORDS = ["oak", "Steel", "chair", "LAMP", "item", "0001", "built", "zzz", "", "%", "_",
                "\\", '"', "'", ",", "Eco Cork", "mug,desk", "100%", "n_m", "ünï", "ÜNÏ", '"quoted"']


def _joined(parts: list[str]) -> str:
    return ",".join(parts)


product_queries = st.fixed_dictionaries(
    {},
    optional={
        "category": st.sampled_from(["", "1", "2", "5", "12", "13", "999", "abc", " 3", "0", "-1"]),
        "min_price": st.one_of(
            st.decimals(min_value=0, max_value=400, places=2).map(str),
            st.sampled_from(["", "abc", "NaN", "-5", "1e2", "10.005"]),
        ),
        "max_price": st.one_of(
            st.decimals(min_value=0, max_value=400, places=2).map(str),
            st.sampled_from(["", "inf", "1e51", "99.999"]),
        ),
        "in_stock": st.sampled_from(["", "true", "false", "yes"]),
        "is_active": st.sampled_from(["", "true", "false", "1"]),
        "search": st.lists(st.sampled_from(SEARCH_WORDS), max_size=3).map(" ".join),
        "ordering": st.lists(
            st.sampled_from(ORDER_FIELDS).flatmap(lambda f: st.sampled_from([f, "-" + f])), max_size=3
        ).map(_joined),
        "page": st.sampled_from(["", "1", "2", "3", "last", "0", "50", "x"]),
        "page_size": st.sampled_from(["", "3", "7", "20", "100", "500", "0", "-2", "x"]),
    },
)

detail_paths = st.sampled_from(
    ["1", "2", "7", "14", "22", "33", "150", "200", "201", "0", "-1", "abc", "99999999999"]
).map(lambda pk: f"/api/products/{pk}/")

category_queries = st.fixed_dictionaries(
    {},
    optional={
        "parent": st.sampled_from(["", "1", "2", "4", "999", "x"]),
        "search": st.lists(st.sampled_from(["home", "Garden", "s", "zzz", "/", ""]), max_size=2).map(" ".join),
        "ordering": st.lists(st.sampled_from(["id", "-id", "name", "-name", "nope"]), max_size=2).map(_joined),
        "page": st.sampled_from(["", "1", "2", "last", "9"]),
        "page_size": st.sampled_from(["", "2", "5", "100"]),
    },
)


def sort_key(record: dict[str, Any], ordering: str | None, allowed: tuple[str, ...]) -> tuple[Any, ...]:
    """The values a list was ordered by (the monolith's OrderingFilter rules)."""
    fields = [f.strip() for f in (ordering or "").split(",")]
    valid = [f.removeprefix("-") for f in fields if f.removeprefix("-") in allowed] or ["id"]
    return tuple(record[f] for f in valid)


def compare(
    monolith: httpx.Response,
    service: httpx.Response,
    *,
    ordering: str | None,
    allowed: tuple[str, ...],
    known_rows: dict[int, dict[str, Any]],
) -> None:
    """Assert the service's answer is equivalent to the monolith's (see INTENDED_DIFFERENCES)."""
    where = f"{service.request.method} {service.request.url}"
    assert service.status_code == monolith.status_code, (where, monolith.text[:300], service.text[:300])
    assert service.headers["content-type"] == monolith.headers["content-type"], where
    mono, serv = monolith.json(), service.json()
    if not (isinstance(mono, dict) and "results" in mono):
        assert serv == mono, where
        return
    for field in ("count", "next", "previous"):
        assert serv[field] == mono[field], (where, field, mono[field], serv[field])
    m_rows, s_rows = mono["results"], serv["results"]
    if not known_rows:  # a list with a total order (price history): rows compare exactly
        assert s_rows == m_rows, where
        return
    assert len(s_rows) == len(m_rows), where
    m_keys = [sort_key(r, ordering, allowed) for r in m_rows]
    s_keys = [sort_key(r, ordering, allowed) for r in s_rows]
    assert s_keys == m_keys, (where, "rows are not in the same order")
    for row in s_rows:
        assert row == known_rows[row["id"]], (where, "row differs from the monolith's", row)
    # Tie groups held whole by this page must hold the same rows; edge groups may differ.
    groups: dict[tuple[Any, ...], tuple[set[int], set[int]]] = {}
    for key, m_row, s_row in zip(m_keys, m_rows, s_rows, strict=True):
        m_ids, s_ids = groups.setdefault(key, (set(), set()))
        m_ids.add(m_row["id"])
        s_ids.add(s_row["id"])
    edges = {m_keys[0], m_keys[-1]} if m_keys else set()
    for key, (m_ids, s_ids) in groups.items():
        if key not in edges:
            assert s_ids == m_ids, (where, "different rows in a tie group", key)
