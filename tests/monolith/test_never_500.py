"""Whatever a client sends to a write endpoint, the answer is never a 500.

Hypothesis throws generated JSON (right keys, wrong shapes, huge numbers, odd strings)
at every write endpoint as staff (who may call all of them); each answer must be a
DRF-style 2xx/4xx with a JSON body.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db

ENDPOINTS = {
    ("post", "/api/products/"): ["name", "category", "price", "description", "is_active"],
    ("patch", "/api/products/1/"): ["name", "category", "price", "stock_count"],
    ("post", "/api/categories/"): ["name", "parent", "description"],
    ("post", "/api/cart/items/"): ["product", "quantity"],
    ("post", "/api/orders/"): ["address"],
    ("post", "/api/addresses/"): ["line1", "city", "postcode", "country", "is_default"],
    ("patch", "/api/profile/"): ["phone", "marketing_opt_in"],
    ("post", "/api/stock/restock/"): ["product", "warehouse", "quantity"],
    ("post", "/api/auth/login/"): ["username", "password"],
}

scalars = (st.none() | st.booleans() | st.integers(min_value=-(10**30), max_value=10**30)
           | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30)
           | st.sampled_from(["1", "0", "-1", "1e400", "NaN", "9" * 40, "\x00", "12.345"]))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=5), inner, max_size=2), max_leaves=6)


@st.composite
def requests(draw):  # type: ignore[no-untyped-def]
    method, path = draw(st.sampled_from(sorted(ENDPOINTS)))
    keys = draw(st.lists(st.sampled_from(ENDPOINTS[(method, path)]), unique=True))
    body = {k: draw(values) for k in keys}
    if draw(st.integers(0, 9)) == 0:
        body = draw(values)  # not even an object
    return method, path, body


@settings(max_examples=120, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(request=requests())
def test_write_endpoints_answer_4xx_not_500(staff: APIClient, request) -> None:  # type: ignore[no-untyped-def]
    method, path, body = request
    response = getattr(staff, method)(path, body, format="json")
    assert response.status_code < 500, (method, path, body, response.content[:300])
    if response.status_code >= 400:
        assert isinstance(response.json(), dict)


@pytest.mark.parametrize("raw", ['{"name": "x", "category": 1, "price": NaN}',
                                 '{"name": "x", "category": 1, "price": Infinity}',
                                 '{"name": "x", "category": 1, "price": 1e999}', "{", "[]", ""])
def test_raw_json_oddities_are_400(staff: APIClient, raw: str) -> None:
    response = staff.post("/api/products/", raw, content_type="application/json")
    assert response.status_code == 400, response.content
    assert isinstance(response.json(), dict)
