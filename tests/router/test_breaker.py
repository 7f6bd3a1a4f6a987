"""Circuit breaker states with a fake clock."""

from __future__ import annotations

from router.breaker import CLOSED, HALF_OPEN, OPEN, Breaker
from router.config import BreakerConfig


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_consecutive_failures_open_then_half_open_probe_closes() -> None:
    clock = Clock()
    b = Breaker(BreakerConfig(failures=3, open_for=5), clock)
    for _ in range(3):
        assert b.allow()
        b.record(False)
    assert b.state == OPEN and not b.allow()
    clock.now += 5
    assert b.snapshot()["state"] == HALF_OPEN
    assert b.allow()          # one probe
    assert not b.allow()      # only one at a time
    b.record(True)
    assert b.state == CLOSED and b.allow()


def test_a_failed_probe_opens_again() -> None:
    clock = Clock()
    b = Breaker(BreakerConfig(failures=1, open_for=2), clock)
    b.allow()
    b.record(False)
    clock.now += 2
    assert b.allow()
    b.record(False)
    assert b.state == OPEN and not b.allow()


def test_error_rate_over_the_window_opens() -> None:
    clock = Clock()
    b = Breaker(BreakerConfig(failures=100, error_rate=0.5, window=10, min_requests=10), clock)
    for i in range(10):
        b.allow()
        b.record(i % 2 == 0)  # every other request fails, never 100 in a row
        clock.now += 0.5
    assert b.state == OPEN


def test_old_failures_leave_the_window() -> None:
    clock = Clock()
    b = Breaker(BreakerConfig(failures=100, error_rate=0.5, window=2, min_requests=6), clock)
    for _ in range(5):
        b.record(False)  # 5 requests: below min_requests
    clock.now += 10
    b.record(True)
    b.record(False)  # with the old failures this would be 6/7 failing
    assert b.state == CLOSED
