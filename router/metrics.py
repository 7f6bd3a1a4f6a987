"""Counters per route × backend, shadow tallies and breaker states — across worker processes.

Place in the flow: the proxy calls `observe` once per request (a few integer increments);
`/_strangler/status` and `/_strangler/metrics` read `await fresh_aggregate()`.

Several workers: each worker writes its snapshot as `worker-<pid>.json` into a directory
shared by all workers of one router (`STRANGLER_METRICS_DIR`, set by `python -m router`),
every `FLUSH_INTERVAL` seconds when numbers changed, at exit, and at once when asked with
SIGUSR1 (atomic rename). A read first asks every sibling for a fresh file and waits for it
(up to `FRESH_WAIT`), then sums the files with its own live numbers — so two reads served
by different workers never see a counter go backwards. Counters are cumulative: files of
workers that exited (renamed `exited-<pid>.json` by the supervisor) still count.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from bisect import bisect_left
from collections import deque
from pathlib import Path
from typing import Any

BOUNDS_MS = (1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0)
FLUSH_INTERVAL = 0.5
FRESH_WAIT = 0.5  # longest wait for siblings' fresh snapshots on a read
_SEVERITY = {"closed": 0, "half_open": 1, "open": 2}


class Series:
    __slots__ = ("requests", "errors", "statuses", "buckets", "sum_ms")

    def __init__(self) -> None:
        self.requests = 0
        self.errors: dict[str, int] = {}
        self.statuses: dict[str, int] = {}
        self.buckets = [0] * (len(BOUNDS_MS) + 1)
        self.sum_ms = 0.0


class Metrics:
    """One worker's numbers, plus the cross-worker aggregation."""

    def __init__(self, directory: str | os.PathLike[str] | None = None) -> None:
        self.directory = Path(directory) if directory else None
        self.pid = os.getpid()
        self.series: dict[tuple[str, str], Series] = {}
        self.in_flight = 0  # proxied requests being answered right now
        self.shadow: dict[str, dict[str, Any]] = {}
        self.breakers: dict[str, dict[str, Any]] = {}
        self.dirty = False
        self._last_flush = 0.0

    # --- hot path -----------------------------------------------------------------------
    def observe(self, route: str, backend: str, status: int, ms: float, error: str | None = None) -> None:
        series = self.series.get((route, backend))
        if series is None:
            series = self.series[(route, backend)] = Series()
        series.requests += 1
        series.buckets[bisect_left(BOUNDS_MS, ms)] += 1
        series.sum_ms += ms
        klass = f"{status // 100}xx"
        series.statuses[klass] = series.statuses.get(klass, 0) + 1
        if error is None and status >= 500:
            error = f"status_{status}"
        if error is not None:
            series.errors[error] = series.errors.get(error, 0) + 1
        self.dirty = True

    def shadow_stats(self, route: str, keep: int) -> dict[str, Any]:
        stats = self.shadow.get(route)
        if stats is None:
            stats = self.shadow[route] = {"mirrored": 0, "compared": 0, "differing": 0, "differing_raw": 0,
                                          "noise_compared": 0, "noise_differing": 0,
                                          "dropped": 0, "errors": 0,
                                          "pairs": deque(maxlen=max(keep, 1))}
        return stats

    # --- snapshots ----------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "time": time.time(),
            "in_flight": self.in_flight,
            "series": [{"route": r, "backend": b, "requests": s.requests, "errors": s.errors,
                        "statuses": s.statuses, "buckets": s.buckets, "sum_ms": s.sum_ms}
                       for (r, b), s in self.series.items()],
            "shadow": {r: {**{k: v for k, v in st.items() if k != "pairs"},
                           "pairs": list(st["pairs"])} for r, st in self.shadow.items()},
            "breakers": self.breakers,
        }

    def flush(self, force: bool = False) -> None:
        """Write this worker's snapshot file (when numbers changed, or forced)."""
        if self.directory is None or not (self.dirty or force):
            return
        now = time.monotonic()
        if not force and now - self._last_flush < FLUSH_INTERVAL:
            return
        self._last_flush = now
        self.dirty = False
        self.directory.mkdir(parents=True, exist_ok=True)
        target = self.directory / f"worker-{self.pid}.json"
        tmp = target.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.snapshot(), default=list))
        os.replace(tmp, target)

    def retire(self) -> None:
        """At exit: the final snapshot, under a name no reader will signal again."""
        if self.directory is None:
            return
        self.flush(force=True)
        own = self.directory / f"worker-{self.pid}.json"
        if own.exists():
            os.replace(own, self.directory / f"exited-{self.pid}.json")

    def aggregate(self) -> dict[str, Any]:
        """Every worker's numbers summed (this worker's live, the others' from their files)."""
        snaps = [json.loads(json.dumps(self.snapshot(), default=list))]
        for path in self._sibling_files():
            try:
                snaps.append(json.loads(path.read_text()))
            except (OSError, ValueError):
                continue  # vanished (renamed on exit): its exited-<pid> copy is read instead
        return merge(snaps)

    def _sibling_files(self) -> list[Path]:
        if self.directory is None or not self.directory.is_dir():
            return []
        own = f"worker-{self.pid}.json"
        return [p for pattern in ("worker-*.json", "exited-*.json")
                for p in self.directory.glob(pattern) if p.name != own]

    async def fresh_aggregate(self) -> dict[str, Any]:
        """`aggregate()` after every live sibling wrote a snapshot newer than this call."""
        if self.directory is None:
            return self.aggregate()
        asked = time.time()
        waiting = []
        for path in self.directory.glob("worker-*.json"):
            pid = path.stem.removeprefix("worker-")
            if pid.isdigit() and int(pid) != self.pid:
                try:
                    os.kill(int(pid), signal.SIGUSR1)
                    waiting.append(path)
                except (ProcessLookupError, PermissionError):
                    continue
        deadline = time.monotonic() + FRESH_WAIT
        while waiting and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
            waiting = [p for p in waiting if _snapshot_time(p) < asked]
        return self.aggregate()


def _snapshot_time(path: Path) -> float:
    try:
        return float(json.loads(path.read_text())["time"])
    except (OSError, ValueError, KeyError):
        return float("inf")  # gone (exited): nothing more to wait for


def merge(snaps: list[dict[str, Any]]) -> dict[str, Any]:
    series: dict[tuple[str, str], dict[str, Any]] = {}
    shadow: dict[str, dict[str, Any]] = {}
    breakers: dict[str, dict[str, Any]] = {}
    for snap in snaps:
        for s in snap["series"]:
            key = (s["route"], s["backend"])
            agg = series.setdefault(key, {"requests": 0, "errors": {}, "statuses": {},
                                          "buckets": [0] * (len(BOUNDS_MS) + 1), "sum_ms": 0.0})
            agg["requests"] += s["requests"]
            agg["sum_ms"] += s["sum_ms"]
            for kind, n in s["errors"].items():
                agg["errors"][kind] = agg["errors"].get(kind, 0) + n
            for kind, n in s["statuses"].items():
                agg["statuses"][kind] = agg["statuses"].get(kind, 0) + n
            agg["buckets"] = [a + b for a, b in zip(agg["buckets"], s["buckets"], strict=True)]
        for route, st in snap["shadow"].items():
            agg = shadow.setdefault(route, {"pairs": []})
            for k, v in st.items():
                if k == "pairs":
                    agg["pairs"].extend(v)
                else:
                    agg[k] = agg.get(k, 0) + v
        for name, b in snap["breakers"].items():
            agg = breakers.setdefault(name, {"state": "closed", "opened": 0, "workers": []})
            agg["workers"].append({"pid": snap["pid"], **b})
            agg["opened"] += b.get("opened", 0)
            if _SEVERITY[b["state"]] > _SEVERITY[agg["state"]]:
                agg["state"] = b["state"]
    for agg in series.values():
        agg["p50_ms"] = quantile(agg["buckets"], 0.5)
        agg["p99_ms"] = quantile(agg["buckets"], 0.99)
    for st in shadow.values():
        st["pairs"].sort(key=lambda p: p.get("time", 0))
        compared = st.get("compared", 0)
        noise = st.get("noise_compared", 0)
        # diff_rate: any difference; net: differences outside fields that also differ when
        # the primary is compared with itself (the calibrated noise).
        st["diff_rate"] = st.get("differing_raw", 0) / compared if compared else 0.0
        st["noise_rate"] = st.get("noise_differing", 0) / noise if noise else 0.0
        st["net_diff_rate"] = st.get("differing", 0) / compared if compared else 0.0
    return {"series": series, "shadow": shadow, "breakers": breakers, "workers": len(snaps),
            "in_flight": sum(snap.get("in_flight", 0) for snap in snaps)}


def quantile(buckets: list[int], q: float) -> float | None:
    """Estimate a latency quantile (ms) from histogram buckets, interpolating linearly."""
    total = sum(buckets)
    if not total:
        return None
    rank = q * total
    seen = 0
    for i, count in enumerate(buckets):
        if count and seen + count >= rank:
            low = BOUNDS_MS[i - 1] if i > 0 else 0.0
            if i >= len(BOUNDS_MS):
                return BOUNDS_MS[-1]
            return round(low + (BOUNDS_MS[i] - low) * (rank - seen) / count, 3)
        seen += count
    return BOUNDS_MS[-1]


def prometheus(agg: dict[str, Any]) -> str:
    """The aggregate in Prometheus text exposition format."""
    out = ["# HELP strangler_requests_total Requests forwarded, per route and backend.",
           "# TYPE strangler_requests_total counter"]
    for (route, backend), s in sorted(agg["series"].items()):
        out.append(f'strangler_requests_total{{route="{route}",backend="{backend}"}} {s["requests"]}')
    out += ["# HELP strangler_errors_total Failed requests by kind.", "# TYPE strangler_errors_total counter"]
    for (route, backend), s in sorted(agg["series"].items()):
        for kind, n in sorted(s["errors"].items()):
            out.append(f'strangler_errors_total{{route="{route}",backend="{backend}",kind="{kind}"}} {n}')
    out += ["# HELP strangler_request_duration_seconds Time to answer, router included.",
            "# TYPE strangler_request_duration_seconds histogram"]
    for (route, backend), s in sorted(agg["series"].items()):
        labels = f'route="{route}",backend="{backend}"'
        cumulative = 0
        for bound, count in zip(BOUNDS_MS + (float("inf"),), s["buckets"], strict=True):
            cumulative += count
            le = "+Inf" if bound == float("inf") else repr(bound / 1000)
            out.append(f'strangler_request_duration_seconds_bucket{{{labels},le="{le}"}} {cumulative}')
        out.append(f"strangler_request_duration_seconds_sum{{{labels}}} {s['sum_ms'] / 1000:.6f}")
        out.append(f"strangler_request_duration_seconds_count{{{labels}}} {s['requests']}")
    out += ["# HELP strangler_breaker_open Breaker state per upstream (0 closed, 1 half-open, 2 open).",
            "# TYPE strangler_breaker_open gauge"]
    for name, b in sorted(agg["breakers"].items()):
        out.append(f'strangler_breaker_open{{upstream="{name}"}} {_SEVERITY[b["state"]]}')
    out += ["# HELP strangler_shadow_total Shadow comparisons per route and outcome.",
            "# TYPE strangler_shadow_total counter"]
    for route, st in sorted(agg["shadow"].items()):
        for kind in ("mirrored", "compared", "differing", "differing_raw", "dropped", "noise_compared", "noise_differing", "errors"):
            out.append(f'strangler_shadow_total{{route="{route}",outcome="{kind}"}} {st.get(kind, 0)}')
    return "\n".join(out) + "\n"
