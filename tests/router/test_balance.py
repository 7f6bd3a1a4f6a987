"""Backend choice: override > sticky cohort > weight; monotone, exact at 0 and 100."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router import balance
from router.balance import bucket, bucket_of, by_hash, choose, cut_points, murmur2_py
from tests.conftest import service_missing

# nginx's ngx_murmur_hash2 of these bytes (tests/dataplane/test_same_backend.py checks the
# same function against a running nginx's split_clients).
VECTORS = {b"": 0, b"a": 2456313694, b"ab": 446775395, b"abc": 324500635, b"abcd": 646393889,
           b"abcde": 1594468574, b"products:user-1": 3683600154}

keys = st.text(min_size=0, max_size=40)


@given(key=keys, low=st.integers(0, 100), high=st.integers(0, 100))
@settings(max_examples=300, deadline=None)
def test_raising_the_candidate_weight_never_moves_a_user_back(key: str, low: int, high: int) -> None:
    low, high = min(low, high), max(low, high)
    before = choose([("monolith", 100 - low), ("catalog", low)], salt="products", key=key)
    after = choose([("monolith", 100 - high), ("catalog", high)], salt="products", key=key)
    if before == "catalog":
        assert after == "catalog"


@given(h=st.integers(0, 2**32 - 1), w1=st.integers(0, 100), w2=st.integers(0, 100))
def test_with_three_backends_the_top_candidate_only_gains_users_when_raised(h: int, w1: int, w2: int) -> None:
    # search (listed first after the primary) owns the top slice; catalog keeps 20 %.
    lo, hi = sorted((min(w1, 80), min(w2, 80)))
    before = by_hash([("monolith", 80 - lo), ("search", lo), ("catalog", 20)], h)
    after = by_hash([("monolith", 80 - hi), ("search", hi), ("catalog", 20)], h)
    if before == "search":
        assert after == "search"


def compiled() -> Callable[[bytes], int]:
    try:
        from router import _murmur2
    except ImportError as exc:
        service_missing("the compiled router._murmur2 (a C compiler and Python's headers: Debian "
                        "`apt-get install gcc python3-dev`, then `pip install -e .`)", exc)
    return _murmur2.murmur2


@pytest.mark.parametrize("impl", ["compiled", "python"])
def test_murmur2_is_nginx_s(impl: str) -> None:
    fn = compiled() if impl == "compiled" else murmur2_py
    assert {data: fn(data) for data in VECTORS} == VECTORS


@given(data=st.binary(max_size=64))
def test_the_compiled_and_python_hashes_agree(data: bytes) -> None:
    assert compiled()(data) == murmur2_py(data)


def test_the_router_uses_the_compiled_hash_unless_asked_not_to() -> None:
    import os
    pure = os.environ.get("STRANGLER_PURE_PYTHON", "") not in ("", "0")
    if not pure:
        compiled()  # says what is missing when it did not build
    assert balance.NATIVE is not pure, f"router.balance.NATIVE is {balance.NATIVE} with STRANGLER_PURE_PYTHON={pure}"


@given(h=st.integers(0, 2**32 - 1), weight=st.integers(0, 100))
def test_bucket_agrees_with_nginx_s_cut_point(h: int, weight: int) -> None:
    # Two backends: the primary keeps the user iff bucket < 100 * its weight.
    primary = by_hash([("monolith", weight), ("catalog", 100 - weight)], h) == "monolith"
    assert primary == (bucket_of(h) < 100 * weight)


def test_the_cut_points_are_nginx_s_arithmetic() -> None:
    # split_clients: last += percent(0.01 %) * 0xffffffff / 10000, per slice; the last is `*`.
    assert cut_points([("m", 63), ("a", 10), ("b", 27)]) == [
        ("m", 6300 * 0xFFFFFFFF // 10000), ("b", 6300 * 0xFFFFFFFF // 10000 + 2700 * 0xFFFFFFFF // 10000),
        ("a", None)]
    assert cut_points([("m", 0), ("a", 100)]) == [("a", None)]
    assert cut_points([("m", 100), ("a", 0)]) == [("m", None)]
    assert by_hash([("m", 100), ("a", 0)], 0xFFFFFFFF) == "m"


@given(key=keys)
def test_weights_0_and_100_are_exact(key: str) -> None:
    assert choose([("monolith", 100), ("catalog", 0)], salt="s", key=key) == "monolith"
    assert choose([("monolith", 0), ("catalog", 100)], salt="s", key=key) == "catalog"


@given(weight=st.integers(1, 99))
@settings(max_examples=15, deadline=None)
def test_the_split_follows_the_weight_over_many_users(weight: int) -> None:
    n = 20_000
    hits = sum(choose([("m", 100 - weight), ("c", weight)], salt="r", key=f"user-{i}") == "c"
               for i in range(n))
    # Binomial: 5 standard deviations is far beyond noise, far below a wrong split.
    sd = (n * weight / 100 * (1 - weight / 100)) ** 0.5
    assert abs(hits - n * weight / 100) < 5 * sd + 1


def test_the_same_user_always_lands_on_the_same_backend() -> None:
    backends = [("monolith", 50), ("catalog", 50)]
    for i in range(200):
        first = choose(backends, salt="products", key=f"u{i}")
        assert all(choose(backends, salt="products", key=f"u{i}") == first for _ in range(3))


def test_a_different_salt_reshuffles_users() -> None:
    same = sum(bucket("a", f"u{i}") == bucket("b", f"u{i}") for i in range(1000))
    assert same < 10
    assert bucket("a", "u1") == bucket_of(murmur2_py(b"a:u1"))  # nginx's "${salt}:${key}"


def test_override_beats_cohort_and_weight() -> None:
    backends = [("monolith", 100), ("catalog", 0)]
    assert choose(backends, salt="s", key="k", override="always", candidate="catalog") == "catalog"
    backends = [("monolith", 0), ("catalog", 100)]
    assert choose(backends, salt="s", key="k", override="never", candidate="catalog") == "monolith"
    # Anything else is ignored.
    assert choose(backends, salt="s", key="k", override="maybe", candidate="catalog") == "catalog"
