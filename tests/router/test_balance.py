"""Backend choice: override > sticky cohort > weight; monotone, exact at 0 and 100."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from router.balance import BUCKETS, bucket, by_bucket, choose

keys = st.text(min_size=0, max_size=40)


@given(key=keys, low=st.integers(0, 100), high=st.integers(0, 100))
@settings(max_examples=300, deadline=None)
def test_raising_the_candidate_weight_never_moves_a_user_back(key: str, low: int, high: int) -> None:
    low, high = min(low, high), max(low, high)
    before = choose([("monolith", 100 - low), ("catalog", low)], salt="products", key=key)
    after = choose([("monolith", 100 - high), ("catalog", high)], salt="products", key=key)
    if before == "catalog":
        assert after == "catalog"


@given(b=st.integers(0, BUCKETS - 1), w1=st.integers(0, 100), w2=st.integers(0, 100))
def test_with_three_backends_a_candidate_only_gains_buckets_when_raised(b: int, w1: int, w2: int) -> None:
    # catalog keeps its share; search grows from w1 to w2: search's buckets only grow.
    catalog = 20
    w1, w2 = min(w1, 80), min(w2, 80)
    lo, hi = min(w1, w2), max(w1, w2)
    before = by_bucket([("monolith", 80 - lo), ("catalog", catalog), ("search", lo)], b)
    after = by_bucket([("monolith", 80 - hi), ("catalog", catalog), ("search", hi)], b)
    if before == "search":
        assert after == "search"
    if before == "catalog":
        assert after == "catalog"


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


def test_override_beats_cohort_and_weight() -> None:
    backends = [("monolith", 100), ("catalog", 0)]
    assert choose(backends, salt="s", key="k", override="always", candidate="catalog") == "catalog"
    backends = [("monolith", 0), ("catalog", 100)]
    assert choose(backends, salt="s", key="k", override="never", candidate="catalog") == "monolith"
    # Anything else is ignored.
    assert choose(backends, salt="s", key="k", override="maybe", candidate="catalog") == "catalog"
