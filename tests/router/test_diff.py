"""Response comparison rules (the Diffy method's building block)."""

from __future__ import annotations

import json

from router.diff import Response, compare


def r(body: object, status: int = 200, ctype: str = "application/json") -> Response:
    return Response(status, {"content-type": ctype}, json.dumps(body).encode())


def test_equal_json_bodies_do_not_differ_whatever_the_key_order() -> None:
    a = Response(200, {}, b'{"a": 1, "b": [1, 2]}')
    b = Response(200, {}, b'{"b": [1, 2], "a": 1}')
    assert compare(a, b) == []


def test_differences_are_reported_by_path() -> None:
    a = r({"results": [{"id": 1, "name": "x"}, {"id": 2, "name": "y"}], "count": 2})
    b = r({"results": [{"id": 1, "name": "x"}, {"id": 2, "name": "Y"}], "count": 2})
    assert compare(a, b) == ["results[1].name"]
    assert compare(a, r({}, status=500)) == ["status", "count", "results"]


def test_ignore_rules_with_any_index() -> None:
    a = r({"results": [{"id": 1, "updated_at": "t1"}], "updated_at": "t"})
    b = r({"results": [{"id": 1, "updated_at": "t2"}], "updated_at": "u"})
    assert compare(a, b, ignore=("results[*].updated_at", "updated_at")) == []
    assert compare(a, b, ignore=("updated_at",)) == ["results[0].updated_at"]


def test_unordered_lists() -> None:
    a = r({"results": [{"id": 1}, {"id": 2}]})
    b = r({"results": [{"id": 2}, {"id": 1}]})
    assert compare(a, b) != []
    assert compare(a, b, unordered=("results",)) == []
    assert compare(a, r({"results": [{"id": 2}, {"id": 3}]}), unordered=("results",)) == ["results"]


def test_chosen_headers_and_non_json_bodies() -> None:
    a = Response(200, {"content-type": "text/html"}, b"<p>x</p>")
    b = Response(200, {"content-type": "text/plain"}, b"<p>y</p>")
    assert compare(a, b, headers=("content-type",)) == ["header:content-type", "body"]
    assert compare(a, b) == ["body"]
