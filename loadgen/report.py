"""What `strangler traffic` measured: per-endpoint counts and latencies, failures, summary.

The engine (loadgen/engine.py) records every request here; the summary is what the
walkthrough's "zero failed requests" promise is checked against.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

BODY_EXCERPT = 200
MAX_FAILURES_LISTED = 50


def percentile(sorted_ms: list[float], pct: float) -> float:
    """Nearest-rank percentile of an already sorted list (0 for an empty one)."""
    if not sorted_ms:
        return 0.0
    rank = max(1, math.ceil(pct / 100 * len(sorted_ms)))
    return sorted_ms[rank - 1]


def excerpt(text: str, limit: int = BODY_EXCERPT) -> str:
    flat = re.sub(r"\s+", " ", text).strip()
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


@dataclass
class EndpointStats:
    requests: int = 0
    errors: int = 0
    latencies_ms: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class Failure:
    endpoint: str
    url: str
    status: int  # 0: no HTTP answer (connection refused, timeout, ...)
    body: str
    at_s: float
    user: str

    def as_dict(self) -> dict[str, Any]:
        return {"endpoint": self.endpoint, "url": self.url, "status": self.status,
                "body": self.body, "at_s": round(self.at_s, 3), "user": self.user}


class Recorder:
    """Collects results; single-threaded (one asyncio loop), so no locking."""

    def __init__(self) -> None:
        self.endpoints: dict[str, EndpointStats] = {}
        self.failures: list[Failure] = []
        self.failures_total = 0
        self.count = 0  # a plain int: safe to poll from another thread
        self.held = 0  # writes answered 503 writes_held during an ownership flip, then retried

    def record(self, endpoint: str, latency_ms: float, failure: Failure | None) -> None:
        stats = self.endpoints.setdefault(endpoint, EndpointStats())
        stats.requests += 1
        self.count += 1
        stats.latencies_ms.append(latency_ms)
        if failure is not None:
            stats.errors += 1
            self.failures_total += 1
            if len(self.failures) < MAX_FAILURES_LISTED:
                self.failures.append(failure)

    @property
    def requests(self) -> int:
        return sum(s.requests for s in self.endpoints.values())

    def summary(self, *, base_url: str, elapsed_s: float, rate: float,
                users: dict[str, int], setup_requests: int = 0) -> dict[str, Any]:
        """``rate_achieved`` counts the timed run only, not the logins before it."""
        rows = []
        for name in sorted(self.endpoints):
            stats = self.endpoints[name]
            ms = sorted(stats.latencies_ms)
            rows.append({"endpoint": name, "requests": stats.requests, "errors": stats.errors,
                         "p50_ms": round(percentile(ms, 50), 2),
                         "p99_ms": round(percentile(ms, 99), 2)})
        all_ms = sorted(x for s in self.endpoints.values() for x in s.latencies_ms)
        return {
            "ok": self.failures_total == 0 and self.requests > 0,
            "base_url": base_url,
            "duration_s": round(elapsed_s, 2),
            "rate_target": rate,
            "rate_achieved": (round((self.requests - setup_requests) / elapsed_s, 2)
                              if elapsed_s > 0 else 0.0),
            "users": users,
            "requests": self.requests,
            "errors": self.failures_total,
            "p50_ms": round(percentile(all_ms, 50), 2),
            "p99_ms": round(percentile(all_ms, 99), 2),
            "endpoints": rows,
            "failures": [f.as_dict() for f in self.failures],
            "failures_total": self.failures_total,
            "held_retried": self.held,
        }


def render_table(summary: dict[str, Any]) -> str:
    """The human summary: one row per endpoint, a total, then the failed requests."""
    header = f"{'endpoint':44} {'requests':>9} {'errors':>7} {'p50 ms':>9} {'p99 ms':>9}"
    lines = [f"traffic against {summary['base_url']} for {summary['duration_s']}s "
             f"({summary['rate_achieved']}/s of {summary['rate_target']}/s target; users: "
             + ", ".join(f"{n} {kind}" for kind, n in summary["users"].items())
             + (f"; {summary['anonymous_visitors']} anonymous visitors came and went"
                if summary.get("anonymous_visitors") else "") + ")",
             header, "-" * len(header)]
    for row in summary["endpoints"]:
        lines.append(f"{row['endpoint'][:44]:44} {row['requests']:>9} {row['errors']:>7} "
                     f"{row['p50_ms']:>9.1f} {row['p99_ms']:>9.1f}")
    lines.append("-" * len(header))
    lines.append(f"{'total':44} {summary['requests']:>9} {summary['errors']:>7} "
                 f"{summary['p50_ms']:>9.1f} {summary['p99_ms']:>9.1f}")
    if summary["failures_total"]:
        shown = len(summary["failures"])
        lines.append(f"\n{summary['failures_total']} failed request(s)"
                     + (f", first {shown} listed" if shown < summary["failures_total"] else "") + ":")
        for f in summary["failures"]:
            status = f["status"] or "no answer"
            lines.append(f"  {f['at_s']:>7.2f}s {status} {f['endpoint']} {f['url']} ({f['user']}): {f['body']}")
    else:
        lines.append("\nno failed requests")
    return "\n".join(lines)
