"""The canary gate: windows from cumulative snapshots, and every verdict it can give."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rollout.gate import (
    Gate,
    Snapshot,
    Window,
    cumulative,
    judge,
    merge,
    parse_duration,
    parse_rate,
    parse_steps,
    window,
)

BOUNDS = (5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, math.inf)


def hist(per_bucket: dict[float, int]) -> tuple[tuple[float, int], ...]:
    return cumulative([(b, per_bucket.get(b, 0)) for b in BOUNDS])


def win(requests: int, errors: int = 0, **per_bucket_ms: int) -> Window:
    buckets = {float(k[1:]): v for k, v in per_bucket_ms.items()} if per_bucket_ms else {5.0: requests}
    return Window(requests, errors, hist(buckets))


def test_window_is_the_difference_of_two_snapshots() -> None:
    before = Snapshot(100, 2, hist({5.0: 90, 50.0: 10}))
    after = Snapshot(250, 5, hist({5.0: 200, 50.0: 40, 500.0: 10}))
    w = window(before, after)
    assert (w.requests, w.errors) == (150, 3)
    assert w.buckets[-1][1] == 150
    assert dict(w.buckets)[5.0] == 110
    assert w.p50 == 5.0
    assert w.p99 == 500.0


def test_counter_reset_uses_the_newer_snapshot() -> None:
    before = Snapshot(1000, 10, hist({5.0: 1000}))
    after = Snapshot(30, 1, hist({5.0: 30}))
    assert window(before, after).requests == 30


def test_quantile_beyond_last_finite_bound_reports_that_bound() -> None:
    w = Window(10, 0, hist({math.inf: 10}))
    assert w.p99 == 500.0
    assert Window(0, 0, hist({})).p99 is None


def test_waits_for_interval_and_for_min_requests() -> None:
    gate = Gate(min_requests=100)
    v = judge(gate, candidate=win(500), current=win(500), elapsed=10, interval=30)
    assert v.decision == "wait" and "10s of 30s" in v.explain()
    v = judge(gate, candidate=win(40), current=win(4000), elapsed=60, interval=30)
    assert v.decision == "wait" and "40 of 100 candidate requests" in v.explain()


def test_promotes_a_healthy_candidate_with_reasons() -> None:
    v = judge(Gate(), candidate=win(200, 1, _5=150, _50=50), current=win(800, 0, _5=700, _50=100),
              elapsed=31, interval=30)
    assert v.decision == "promote"
    assert "error rate 0.50% ≤ 1.00% over 200 requests" in v.explain()
    assert "1.00×" in v.explain()


def test_error_rate_over_limit_rolls_back_at_once() -> None:
    v = judge(Gate(max_error_rate=0.01, min_requests=100), candidate=win(100, 5),
              current=win(900), elapsed=2, interval=30)
    assert v.decision == "rollback"
    assert "5.00% (5/100)" in v.explain() and "1.00%" in v.explain()


def test_error_rate_below_min_requests_does_not_decide_yet() -> None:
    v = judge(Gate(min_requests=100), candidate=win(10, 10), current=win(90), elapsed=60, interval=30)
    assert v.decision == "wait"


def test_p99_ratio_over_limit_rolls_back() -> None:
    v = judge(Gate(max_p99_ratio=1.5), candidate=win(200, 0, _5=100, _500=100),
              current=win(800, 0, _50=800), elapsed=30, interval=30)
    assert v.decision == "rollback"
    assert "p99 500 ms is 10.00× the current backend's 50 ms (limit 1.5×)" in v.explain()


def test_p99_under_floor_passes_even_at_a_high_ratio() -> None:
    v = judge(Gate(p99_floor_ms=25), candidate=win(200, 0, _25=200), current=win(800, 0, _5=800),
              elapsed=30, interval=30)
    assert v.decision == "promote" and "under the 25 ms floor" in v.explain()


def test_idle_current_backend_compares_with_baseline() -> None:
    # at 100% the monolith serves nothing: compare with its p99 from the previous step
    v = judge(Gate(), candidate=win(300, 0, _500=300), current=win(0), elapsed=30, interval=30,
              baseline_p99=50.0)
    assert v.decision == "rollback"
    v = judge(Gate(), candidate=win(300, 0, _50=300), current=win(0), elapsed=30, interval=30,
              baseline_p99=50.0)
    assert v.decision == "promote" and "earlier 50 ms" in v.explain()


def test_no_latency_data_promotes_on_errors_alone_and_says_so() -> None:
    v = judge(Gate(), candidate=Window(300, 0), current=Window(0, 0), elapsed=30, interval=30)
    assert v.decision == "promote" and "no latency histogram" in v.explain()


def test_merge_adds_backends() -> None:
    m = merge([win(10, 1), win(30, 2)])
    assert (m.requests, m.errors, m.buckets[-1][1]) == (40, 3, 40)


@given(st.lists(st.integers(0, 50), min_size=len(BOUNDS), max_size=len(BOUNDS)),
       st.lists(st.integers(0, 50), min_size=len(BOUNDS), max_size=len(BOUNDS)))
def test_window_of_growing_counters_adds_up(a: list[int], extra: list[int]) -> None:
    before = Snapshot(sum(a), 0, cumulative(list(zip(BOUNDS, a, strict=True))))
    after_counts = [x + y for x, y in zip(a, extra, strict=True)]
    after = Snapshot(sum(after_counts), 0, cumulative(list(zip(BOUNDS, after_counts, strict=True))))
    w = window(before, after)
    assert w.requests == sum(extra) == w.buckets[-1][1]
    q = w.p99
    assert (q is None) == (sum(extra) == 0)


@pytest.mark.parametrize(("text", "seconds"), [("30s", 30), ("2m", 120), ("500ms", 0.5), ("1h", 3600), ("7", 7)])
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "10 parsecs", "-3s", "fast"])
def test_parse_duration_refuses(bad: str) -> None:
    with pytest.raises(ValueError, match="use a number with ms, s, m or h"):
        parse_duration(bad)


def test_parse_rate_and_steps() -> None:
    assert parse_rate("1%") == 0.01 and parse_rate("0.5%") == 0.005 and parse_rate("0.02") == 0.02
    with pytest.raises(ValueError, match="between 0% and 100%"):
        parse_rate("150%")
    with pytest.raises(ValueError, match="percentage like 1%"):
        parse_rate("lots")
    assert parse_steps("1,5,25,50,100") == [1, 5, 25, 50, 100]
    for bad, msg in [("5,1", "must increase"), ("0,50", "in 1..100"), ("a,b", "comma-separated"), ("", "at least one")]:
        with pytest.raises(ValueError, match=msg):
            parse_steps(bad)


def test_gate_refuses_nonsense_limits() -> None:
    with pytest.raises(ValueError, match="give 1.0 or more"):
        Gate(max_p99_ratio=0.5)
    with pytest.raises(ValueError, match="at least 1"):
        Gate(min_requests=0)


# -- one analysis check (the rollout controller's unit) -----------------------------------

def test_check_is_inconclusive_without_enough_traffic_never_failed() -> None:
    from rollout.gate import check

    c = check(Gate(min_requests=50), candidate=win(10, 10), current=win(500))
    assert c.outcome == "inconclusive" and "only 10 candidate requests (need 50)" in c.why


def test_check_fails_on_errors_and_on_a_fixed_p99_limit() -> None:
    from rollout.gate import check

    assert check(Gate(min_requests=10), candidate=win(100, 5), current=win(500)).outcome == "fail"
    slow = check(Gate(min_requests=10, max_p99_ms=40.0), candidate=win(100, 0, _50=100), current=win(100, 0, _50=100))
    assert slow.outcome == "fail" and "over the limit 40 ms" in slow.why


def _router_window(ms: float, n: int = 200) -> Window:
    """`n` requests of `ms` in the router's own histogram (router/metrics.py's edges)."""
    from router.metrics import BOUNDS_MS

    edges = (*BOUNDS_MS, math.inf)
    counts = [0] * len(edges)
    counts[next(i for i, b in enumerate(edges) if ms <= b)] = n
    return Window(n, 0, cumulative(list(zip(edges, counts, strict=True))))


def test_the_p99_gate_fires_on_loopback_latencies_with_the_routers_buckets() -> None:
    """Loopback numbers. The old edges (…10/25/50) and 25 ms floor passed an 18 ms candidate
    against a 1.6 ms monolith (its p99 read "25 ms, under the floor"), and rolled back an 11 ms
    one against 9 ms (25 vs 10: "2.5×")."""
    from rollout.gate import check

    gate = Gate(min_requests=100)
    slow = check(gate, candidate=_router_window(18.0), current=_router_window(1.6))
    assert slow.outcome == "fail" and "candidate p99 20 ms" in slow.why
    close = check(gate, candidate=_router_window(11.0), current=_router_window(9.0))
    assert close.outcome == "pass", close.why  # 22% slower: within 1.5×
    noise = check(gate, candidate=_router_window(2.4), current=_router_window(1.6))
    assert noise.outcome == "pass"  # 3 ms vs 2 ms: under the 10 ms floor
