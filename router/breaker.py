"""Circuit breaker per upstream: closed → open → half-open → closed.

Place in the flow: consulted before forwarding (`allow`), told the outcome after (`record`).
Opens on `failures` consecutive failures, or when the error rate over the last `window`
seconds reaches `error_rate` with at least `min_requests` requests. After `open_for`
seconds it lets one probe through at a time (half-open); `probes` successes close it, a
failure opens it again. Failures are connect errors, timeouts, resets and 5xx answers.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from router.config import BreakerConfig

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


class Breaker:
    def __init__(self, config: BreakerConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.clock = clock
        self.state = CLOSED
        self.consecutive = 0
        self.opened_at = 0.0
        self.probing = 0
        self.probe_successes = 0
        self.opened_count = 0
        # Per-second buckets [second, requests, failures] for the error-rate window.
        self._buckets: list[list[float]] = []

    def allow(self) -> bool:
        """Whether a request may go to this upstream now (half-open admits one probe)."""
        if self.state == CLOSED:
            return True
        if self.state == OPEN:
            if self.clock() - self.opened_at < self.config.open_for:
                return False
            self.state = HALF_OPEN
            self.probing = 0
            self.probe_successes = 0
        if self.probing >= 1:
            return False
        self.probing += 1
        return True

    def release(self) -> None:
        """A request `allow` admitted was never sent (e.g. no connection free): no outcome."""
        if self.state == HALF_OPEN:
            self.probing = max(0, self.probing - 1)

    def record(self, ok: bool) -> None:
        """The outcome of a request that `allow` admitted."""
        now = self.clock()
        if self.state == HALF_OPEN:
            self.probing = max(0, self.probing - 1)
            if not ok:
                self._open(now)
            else:
                self.probe_successes += 1
                if self.probe_successes >= self.config.probes:
                    self.state = CLOSED
                    self.consecutive = 0
                    self._buckets.clear()
            return
        second = int(now)
        buckets = self._buckets
        if not buckets or buckets[-1][0] != second:
            buckets.append([second, 0, 0])
            horizon = now - self.config.window
            while buckets and buckets[0][0] < horizon:
                buckets.pop(0)
        bucket = buckets[-1]
        bucket[1] += 1
        if ok:
            self.consecutive = 0
            return
        bucket[2] += 1
        self.consecutive += 1
        if self.state != CLOSED:
            return
        if self.consecutive >= self.config.failures:
            self._open(now)
            return
        requests = sum(b[1] for b in buckets)
        if requests >= self.config.min_requests:
            failures = sum(b[2] for b in buckets)
            if failures / requests >= self.config.error_rate:
                self._open(now)

    def _open(self, now: float) -> None:
        self.state = OPEN
        self.opened_at = now
        self.opened_count += 1
        self.probing = 0
        self.probe_successes = 0
        self._buckets.clear()

    def snapshot(self) -> dict[str, object]:
        # An open breaker whose time is up reports half_open (the next request probes).
        state = self.state
        if state == OPEN and self.clock() - self.opened_at >= self.config.open_for:
            state = HALF_OPEN
        return {"state": state, "consecutive_failures": self.consecutive,
                "opened": self.opened_count}
