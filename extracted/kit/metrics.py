"""Prometheus metrics of a service (`prometheus_client`), rendered at `/metrics`. Series,
prefixed with the service's name (`catalog_…`):

- `<service>_http_requests_total{method, route, status}`            counter
- `<service>_http_request_duration_seconds{method, route}`          histogram
- `<service>_injected_failures_total`                               counter (its fail-rate switch)
- `<service>_fail_rate`                                             gauge

One registry per app (tests build many apps in one process). With several workers
(`python -m extracted.<service> --workers N`) each worker writes its values into
`PROMETHEUS_MULTIPROC_DIR` (prometheus_client's multiprocess mode, set up by `__main__`) and
`/metrics` sums every worker's files, so a scrape answered by any worker sees them all.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


class Metrics:
    """The service's series on a registry of its own; `render()` gives Prometheus text."""

    def __init__(self, service: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.multiprocess = bool(os.environ.get(MULTIPROC_ENV))
        self._requests = Counter(f"{service}_http_requests", "HTTP requests answered, by route template.",
                                 ["method", "route", "status"], registry=self.registry)
        self._durations = Histogram(f"{service}_http_request_duration_seconds",
                                    "Time to answer, by route template.", ["method", "route"],
                                    buckets=BUCKETS, registry=self.registry)
        self._injected = Counter(f"{service}_injected_failures",
                                 "Requests failed on purpose (the fail-rate switch).", registry=self.registry)
        # every worker holds the same switch: any live worker's value is the service's
        self._fail_rate = Gauge(f"{service}_fail_rate", "Share of /api/ requests failed on purpose right now.",
                                registry=self.registry, multiprocess_mode="livemax")
        self._counts: dict[tuple[str, int], int] = {}  # (route, status) → requests, this process

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self._requests.labels(method, route, str(status)).inc()
        self._durations.labels(method, route).observe(seconds)
        key = (route, status)
        self._counts[key] = self._counts.get(key, 0) + 1

    def injected_failure(self) -> None:
        self._injected.inc()

    def set_fail_rate(self, rate: float) -> None:
        self._fail_rate.set(rate)

    def requests(self, *, route: str | None = None, status: int | None = None) -> int:
        """How many requests this process answered that matched (for tests and the admin endpoint)."""
        return sum(n for (r, s), n in self._counts.items()
                   if (route is None or r == route) and (status is None or s == status))

    def render(self) -> str:
        if self.multiprocess:
            merged = CollectorRegistry()
            MultiProcessCollector(merged)
            return generate_latest(merged).decode()
        return generate_latest(self.registry).decode()
