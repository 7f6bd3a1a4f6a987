"""Counters per route × backend, shadow tallies and breaker states — across worker processes.

Place in the flow: the proxy calls `observe` once per request (a few integer increments);
`/_strangler/status` and `/_strangler/metrics` read `await fresh_aggregate()`.

Several workers: each worker writes its snapshot as `worker-<pid>.json` into a directory
shared by all workers of one router (`STRANGLER_METRICS_DIR`, set by `python -m router`),
every `FLUSH_INTERVAL` seconds when numbers changed, at exit, and at once when asked with
SIGUSR1 (atomic rename). A read first asks every sibling for a fresh file and waits for it
(up to `FRESH_WAIT`), then sums the files with its own live numbers — so two reads served
by different workers never see a counter go backwards. Counters are cumulative: files of
workers that exited (renamed `exited-<pid>.json` by the supervisor) still count. Gauges —
`in_flight` and breaker states — are a live worker's present, so a dead worker's are
dropped (what prometheus_client's multiprocess mode does with `mark_process_dead`), whether
the supervisor renamed its file or not: a reader checks that a `worker-<pid>.json`'s process
still runs *and* is the one that wrote it (its start time, so a reused pid does not count),
and renames the file of a dead one itself. A dead process is never signalled.
Why not prometheus_client's multiprocess mode itself: a lock and an mmap write per value
made a request's counts cost ~10 µs instead of ~1 (README, *Admin API*).

Ownership (issue 11): each snapshot also says which ownership file the worker applied (its
sha256) and how many writes it admitted per ownership group are still being answered; the
aggregate lists them per live worker (`ownership_workers`), so `strangler own` can wait until
every worker holds the group's writes and none is still in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from bisect import bisect_left
from collections import deque
from pathlib import Path
from typing import Any

# Fine at the low end so a p99 can tell 2 ms from 8 ms on loopback (a canary gate on the
# old 1/2.5/5/10/25 edges judged every local candidate "under 25 ms"); ~24 buckets per series.
BOUNDS_MS = (0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 50.0, 75.0, 100.0, 150.0, 250.0,
             500.0, 1000.0, 2500.0, 5000.0, 10000.0)
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
        self.started = process_start(self.pid)
        self.series: dict[tuple[str, str], Series] = {}
        self.in_flight = 0  # proxied requests being answered right now
        self.shadow: dict[str, dict[str, Any]] = {}
        self.breakers: dict[str, dict[str, Any]] = {}
        self.rate_limited: dict[str, int] = {}  # route → requests answered 429
        self.rate_limit_store_errors = 0  # the replicas' bucket store did not answer (sharedbuckets)
        self.ownership_sha256 = ""  # the ownership file this worker applied ("" if none)
        self.inflight_writes: dict[str, int] = {}  # ownership group → admitted writes unanswered
        self.tracing: dict[str, Any] = {}  # spans ended/exported/dropped (router.tracing), when on
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

    def write_admitted(self, group: str) -> None:
        self.inflight_writes[group] = self.inflight_writes.get(group, 0) + 1
        self.dirty = True

    def write_done(self, group: str) -> None:
        self.inflight_writes[group] -= 1
        self.dirty = True

    def applied_ownership(self, sha256: str, groups: list[str]) -> None:
        """A new config is installed: publish its ownership file's sha (at once, see flush)."""
        self.ownership_sha256 = sha256
        for group in groups:
            self.inflight_writes.setdefault(group, 0)
        self.dirty = True

    def shadow_stats(self, route: str, keep: int) -> dict[str, Any]:
        stats = self.shadow.get(route)
        if stats is None:
            stats = self.shadow[route] = {"mirrored": 0, "compared": 0, "differing": 0, "differing_raw": 0,
                                          "noise_compared": 0, "noise_differing": 0,
                                          "dropped": 0, "errors": 0,
                                          "pairs": deque(maxlen=max(keep, 1)),
                                          "noise_pairs": deque(maxlen=max(keep, 1))}
        return stats

    # --- snapshots ----------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "started": self.started,
            "time": time.time(),
            "in_flight": self.in_flight,
            "series": [{"route": r, "backend": b, "requests": s.requests, "errors": s.errors,
                        "statuses": s.statuses, "buckets": s.buckets, "sum_ms": s.sum_ms}
                       for (r, b), s in self.series.items()],
            "shadow": {r: _shadow_snapshot(st) for r, st in self.shadow.items()},
            "breakers": self.breakers,
            "rate_limited": self.rate_limited,
            "rate_limit_store_errors": self.rate_limit_store_errors,
            "tracing": self.tracing,
            "ownership": {"sha256": self.ownership_sha256, "inflight_writes": dict(self.inflight_writes)},
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
        mark_exited(self.directory / f"worker-{self.pid}.json")

    def aggregate(self) -> dict[str, Any]:
        """Every worker's numbers summed (this worker's live, the others' from their files);
        the gauges of workers that are gone are left out."""
        snaps = [{**json.loads(json.dumps(self.snapshot(), default=list)), "live": True}]
        files = self._sibling_files()
        for path in files:
            snap = _read_snapshot(path)
            if snap is None and path.name.startswith("worker-") and self.directory is not None:
                # Renamed on exit since the listing: read its exited copy instead.
                pid = path.stem.removeprefix("worker-")
                files += [p for p in self.directory.glob(f"exited-{pid}-*.json") if p not in files]
            if snap is None:
                continue
            snap["live"] = path.name.startswith("worker-") and _same_process(snap)
            if not snap["live"] and path.name.startswith("worker-"):
                # Died unnoticed (killed, no supervisor): from now on its file is history.
                mark_exited(path)
            snaps.append(snap)
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
                snap = _read_snapshot(path)
                if snap is None or not _same_process(snap):
                    continue  # gone: a reused pid may belong to anyone, never signal it
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


def _shadow_snapshot(stats: dict[str, Any]) -> dict[str, Any]:
    out = {k: list(v) if isinstance(v, deque) else v for k, v in stats.items() if k != "window"}
    if "window" in stats:  # the route's NoiseWindow: counts over its last comparisons
        out["window"] = {**stats["window"].summary(), "ratio": stats["window"].ratio}
    return out


def mark_exited(path: Path) -> None:
    """Rename a worker's snapshot file for a process that is gone: never signalled again, its
    gauges never counted, its counters kept. The name holds the start time too, so a later
    worker given the same pid does not overwrite it."""
    snap = _read_snapshot(path)
    if snap is None:
        return  # renamed already (by the supervisor, the worker itself or another reader)
    with contextlib.suppress(OSError):  # someone renamed it first
        os.replace(path, path.with_name(f"exited-{snap.get('pid')}-{snap.get('started')}.json"))


def process_start(pid: int) -> int | None:
    """When a process started (clock ticks since boot, from /proc), None where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Fields after the command name (which may hold spaces and parentheses): state is 3rd,
    # starttime the 22nd.
    return int(stat.rpartition(")")[2].split()[19])


def _same_process(snap: dict[str, Any]) -> bool:
    """Whether the process that wrote a snapshot still runs (not a later one with its pid)."""
    pid = snap.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, someone else's: the start time decides
    started = snap.get("started")
    return started is None or process_start(pid) == started


def _read_snapshot(path: Path) -> dict[str, Any] | None:
    try:
        snap = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return snap if isinstance(snap, dict) else None


def _snapshot_time(path: Path) -> float:
    try:
        return float(json.loads(path.read_text())["time"])
    except (OSError, ValueError, KeyError):
        return float("inf")  # gone (exited): nothing more to wait for


def merge(snaps: list[dict[str, Any]]) -> dict[str, Any]:
    series: dict[tuple[str, str], dict[str, Any]] = {}
    shadow: dict[str, dict[str, Any]] = {}
    breakers: dict[str, dict[str, Any]] = {}
    rate_limited: dict[str, int] = {}
    spans: dict[str, int] = {}
    live = [snap for snap in snaps if snap.get("live", True)]
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
            if len(s["buckets"]) == len(agg["buckets"]):  # a worker of an older build: other edges
                agg["buckets"] = [a + b for a, b in zip(agg["buckets"], s["buckets"], strict=True)]
        for route, st in snap["shadow"].items():
            agg = shadow.setdefault(route, {"pairs": [], "noise_pairs": []})
            for k, v in st.items():
                if k in ("pairs", "noise_pairs"):
                    agg[k].extend(v)
                elif k == "window":
                    _merge_window(agg.setdefault("window", {}), v)
                else:
                    agg[k] = agg.get(k, 0) + v
        for route, n in snap.get("rate_limited", {}).items():
            rate_limited[route] = rate_limited.get(route, 0) + n
        for kind, n in snap.get("tracing", {}).items():
            if isinstance(n, int):
                spans[kind] = spans.get(kind, 0) + n
        for name, b in snap["breakers"].items():
            agg = breakers.setdefault(name, {"state": "closed", "opened": 0, "workers": []})
            agg["opened"] += b.get("opened", 0)  # a counter: the dead's openings still count
    for snap in live:  # gauges: only processes that still run
        for name, b in snap["breakers"].items():
            agg = breakers[name]
            agg["workers"].append({"pid": snap["pid"], **b})
            if _SEVERITY[b["state"]] > _SEVERITY[agg["state"]]:
                agg["state"] = b["state"]
    for agg in series.values():
        agg["p50_ms"] = quantile(agg["buckets"], 0.5)
        agg["p99_ms"] = quantile(agg["buckets"], 0.99)
    for st in shadow.values():
        st["pairs"].sort(key=lambda p: p.get("time", 0))
        st["noise_pairs"].sort(key=lambda p: p.get("time", 0))
        # diff_rate: any difference; net: differences in fields the primary did not disagree
        # with itself on at a comparable rate (router.noise), as judged when each pair came.
        _rates(st)
        if "window" in st:  # the same over the last comparisons only, judged as of now
            _rates(st["window"])
    owners = [{"pid": snap.get("pid"), "sha256": snap.get("ownership", {}).get("sha256", ""),
               "inflight_writes": dict(snap.get("ownership", {}).get("inflight_writes", {}))}
              for snap in live]
    return {"series": series, "shadow": shadow, "breakers": breakers, "rate_limited": rate_limited,
            "rate_limit_store_errors": sum(snap.get("rate_limit_store_errors", 0) for snap in snaps),
            "tracing": spans,
            "ownership_workers": owners, "workers": len(live),
            "in_flight": sum(snap.get("in_flight", 0) for snap in live)}


def _rates(st: dict[str, Any]) -> None:
    compared, noise = st.get("compared", 0), st.get("noise_compared", 0)
    st["diff_rate"] = st.get("differing_raw", 0) / compared if compared else 0.0
    st["noise_rate"] = st.get("noise_differing", 0) / noise if noise else 0.0
    st["net_diff_rate"] = st.get("differing", 0) / compared if compared else 0.0


def _merge_window(agg: dict[str, Any], window: dict[str, Any]) -> None:
    """Sum workers' windows; a field's verdict is taken again on the summed counts."""
    for k in ("compared", "noise_compared", "differing_raw", "differing", "noise_differing"):
        agg[k] = agg.get(k, 0) + window.get(k, 0)
    agg["ratio"] = window.get("ratio", 2.0)
    fields = agg.setdefault("fields", {})
    for name, f in window.get("fields", {}).items():
        both = fields.setdefault(name, {"raw": 0, "noise": 0})
        both["raw"] += f["raw"]
        both["noise"] += f["noise"]
    for f in fields.values():
        f["is_noise"] = bool(f["noise"]) and \
            f["raw"] * agg["noise_compared"] <= agg["ratio"] * f["noise"] * agg["compared"]


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
    out += ["# HELP strangler_rate_limited_total Requests refused with 429 by a route's rate limit.",
            "# TYPE strangler_rate_limited_total counter"]
    for route, n in sorted(agg.get("rate_limited", {}).items()):
        out.append(f'strangler_rate_limited_total{{route="{route}"}} {n}')
    out += ["# HELP strangler_rate_limit_store_errors_total Times the replicas' rate-limit store "
            "(rate_limit_store: Redis) did not answer in time; on_error decided those requests.",
            "# TYPE strangler_rate_limit_store_errors_total counter",
            f"strangler_rate_limit_store_errors_total {agg.get('rate_limit_store_errors', 0)}"]
    out += ["# HELP strangler_breaker_open Breaker state per upstream (0 closed, 1 half-open, 2 open).",
            "# TYPE strangler_breaker_open gauge"]
    for name, b in sorted(agg["breakers"].items()):
        out.append(f'strangler_breaker_open{{upstream="{name}"}} {_SEVERITY[b["state"]]}')
    out += ["# HELP strangler_shadow_total Shadow comparisons per route and outcome.",
            "# TYPE strangler_shadow_total counter"]
    for route, st in sorted(agg["shadow"].items()):
        for kind in ("mirrored", "compared", "differing", "differing_raw", "dropped", "noise_compared", "noise_differing", "errors"):
            out.append(f'strangler_shadow_total{{route="{route}",outcome="{kind}"}} {st.get(kind, 0)}')
    out += ["# HELP strangler_shadow_window_rate Shadow rates over the last noise_window comparisons, "
            "as judged now: raw differences, net of noise, and the primary's own (noise).",
            "# TYPE strangler_shadow_window_rate gauge"]
    for route, st in sorted(agg["shadow"].items()):
        window = st.get("window", {})
        for kind, key in (("raw", "diff_rate"), ("net", "net_diff_rate"), ("noise", "noise_rate")):
            out.append(f'strangler_shadow_window_rate{{route="{route}",kind="{kind}"}} {window.get(key, 0.0)}')
    out += ["# HELP strangler_trace_spans_total Router spans by outcome: ended, exported, dropped "
            "(the tracing backend was down or refused them).",
            "# TYPE strangler_trace_spans_total counter"]
    for kind, n in sorted(agg.get("tracing", {}).items()):
        out.append(f'strangler_trace_spans_total{{outcome="{kind}"}} {n}')
    return "\n".join(out) + "\n"


def route_weights(routes: Any) -> str:
    """Each route's weights and who is the candidate, in Prometheus text (read side only: the
    config in force, not counted per request). The candidate's weight is where a canary stands:
    its step. Roles as `strangler canary` judges: the route's candidate, and the current
    backends it is compared with (every other one); a one-backend route has no candidate."""
    out = ["# HELP strangler_route_weight Weight (percent) of each backend of a route now.",
           "# TYPE strangler_route_weight gauge"]
    roles = ["# HELP strangler_route_backend_info A route's backend and its role in a rollout "
             "(candidate, or current: the backends the candidate is judged against).",
             "# TYPE strangler_route_backend_info gauge"]
    for route in sorted(routes, key=lambda r: r.name):
        several = len(route.backends) > 1
        for backend, weight in route.backends:
            out.append(f'strangler_route_weight{{route="{route.name}",backend="{backend}"}} {weight}')
            role = "candidate" if several and backend == route.candidate else "current"
            roles.append(f'strangler_route_backend_info{{route="{route.name}",backend="{backend}",'
                         f'role="{role}"}} 1')
    return "\n".join(out + roles) + "\n"


ROLLOUT_STATES = ("running", "paused", "promoted", "rolled_back", "aborted", "inconclusive", "failed",
                  "interrupted", "gone")


def rollout_series(rollouts: Any) -> str:
    """Each rollout `strangler canary` publishes (router/rollouts.py), in Prometheus text: its
    step (1-based; 0 before the first), how many steps it has, the candidate's weight, and its
    state (one series per state, 1 for the one it is in)."""
    out = ["# HELP strangler_rollout_step The step a route's rollout is at (0: not started).",
           "# TYPE strangler_rollout_step gauge"]
    steps = ["# HELP strangler_rollout_steps How many steps the route's rollout has.",
             "# TYPE strangler_rollout_steps gauge"]
    weight = ["# HELP strangler_rollout_weight The weight the rollout last gave its candidate.",
              "# TYPE strangler_rollout_weight gauge"]
    state = ["# HELP strangler_rollout_state 1 for the state the route's rollout is in.",
             "# TYPE strangler_rollout_state gauge"]
    for doc in sorted(rollouts, key=lambda d: str(d.get("route"))):
        labels = f'route="{doc.get("route")}",candidate="{doc.get("candidate", "")}"'
        out.append(f"strangler_rollout_step{{{labels}}} {int(doc.get('step') or 0)}")
        steps.append(f"strangler_rollout_steps{{{labels}}} {len(doc.get('steps') or ())}")
        weight.append(f"strangler_rollout_weight{{{labels}}} {float(doc.get('weight') or 0):g}")
        now = str(doc.get("state"))
        for name in ROLLOUT_STATES if now in ROLLOUT_STATES else (*ROLLOUT_STATES, now):
            state.append(f'strangler_rollout_state{{{labels},state="{name}"}} {int(name == now)}')
    return "\n".join(out + steps + weight + state) + "\n"

