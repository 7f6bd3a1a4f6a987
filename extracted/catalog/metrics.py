"""Prometheus metrics of the service, rendered in the text exposition format at `/metrics`.

A tiny registry instead of a client library: one process, a handful of series, updated on
the hot path with a dict lookup and two additions. Series:

- `catalog_http_requests_total{method, route, status}`            counter
- `catalog_http_request_duration_seconds{method, route}`          histogram
- `catalog_injected_failures_total`                               counter (CATALOG_FAIL_RATE)
- `catalog_fail_rate`                                             gauge
"""

from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass, field

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


@dataclass
class _Histogram:
    counts: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    total: float = 0.0
    n: int = 0


class Metrics:
    """Counters and histograms keyed by label tuples; `render()` gives Prometheus text."""

    def __init__(self) -> None:
        self._requests: dict[tuple[str, str, int], int] = {}
        self._durations: dict[tuple[str, str], _Histogram] = {}
        self.injected_failures = 0
        self.fail_rate = 0.0
        # Sync endpoints run in a threadpool; the middleware runs on the event loop, but
        # keep updates safe should anyone call observe() from a thread.
        self._lock = threading.Lock()

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        with self._lock:
            key = (method, route, status)
            self._requests[key] = self._requests.get(key, 0) + 1
            hist = self._durations.get((method, route))
            if hist is None:
                hist = self._durations[(method, route)] = _Histogram()
            hist.counts[bisect.bisect_left(BUCKETS, seconds)] += 1
            hist.total += seconds
            hist.n += 1

    def requests(self, *, route: str | None = None, status: int | None = None) -> int:
        """How many requests matched (for tests and the admin endpoint)."""
        return sum(
            n
            for (_, r, s), n in self._requests.items()
            if (route is None or r == route) and (status is None or s == status)
        )

    def render(self) -> str:
        lines = [
            "# HELP catalog_http_requests_total HTTP requests answered, by route template.",
            "# TYPE catalog_http_requests_total counter",
        ]
        with self._lock:
            requests = sorted(self._requests.items())
            durations = sorted((k, _copy(v)) for k, v in self._durations.items())
        for (method, route, status), n in requests:
            lines.append(
                f'catalog_http_requests_total{{method="{method}",route="{_esc(route)}",'
                f'status="{status}"}} {n}'
            )
        lines += [
            "# HELP catalog_http_request_duration_seconds Time to answer, by route template.",
            "# TYPE catalog_http_request_duration_seconds histogram",
        ]
        for (method, route), hist in durations:
            labels = f'method="{method}",route="{_esc(route)}"'
            cumulative = 0
            for bound, count in zip(BUCKETS, hist.counts, strict=False):
                cumulative += count
                lines.append(
                    f'catalog_http_request_duration_seconds_bucket{{{labels},le="{bound}"}} '
                    f"{cumulative}"
                )
            lines.append(
                f'catalog_http_request_duration_seconds_bucket{{{labels},le="+Inf"}} {hist.n}'
            )
            lines.append(f"catalog_http_request_duration_seconds_sum{{{labels}}} {hist.total}")
            lines.append(f"catalog_http_request_duration_seconds_count{{{labels}}} {hist.n}")
        lines += [
            "# HELP catalog_injected_failures_total Requests failed on purpose (CATALOG_FAIL_RATE).",
            "# TYPE catalog_injected_failures_total counter",
            f"catalog_injected_failures_total {self.injected_failures}",
            "# HELP catalog_fail_rate Share of /api/ requests failed on purpose right now.",
            "# TYPE catalog_fail_rate gauge",
            f"catalog_fail_rate {self.fail_rate}",
        ]
        return "\n".join(lines) + "\n"


def _copy(hist: _Histogram) -> _Histogram:
    return _Histogram(counts=list(hist.counts), total=hist.total, n=hist.n)


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
