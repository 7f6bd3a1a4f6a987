"""The rollout gate as pure functions: windows from two cumulative snapshots, then a verdict.

The router exposes cumulative per-backend counters (requests, errors, latency histogram).
A window is the difference of two snapshots, so the candidate and the current backend are
judged over exactly the same interval. The rollout controller (rollout/controller.py) asks
`check` once per analysis interval — pass, fail, or *inconclusive* (too few candidate
requests: never a failure). Each step of the foreground `strangler canary` asks `judge`:

    wait      not enough time or requests yet
    promote   the window is long and large enough, and the candidate is within limits
    rollback  the candidate's error rate or p99 (vs the current backend's) is over the limit

An error rate already over the limit with the minimum request count is a rollback at once;
a latency verdict waits for the full interval (a few slow cold requests are not a trend).
Latencies below `p99_floor_ms` always pass: on loopback a 2 ms vs 1 ms p99 is noise. The
router's histogram edges are fine at the low end (router/metrics.py), so a 30 ms candidate
against a 2 ms monolith does fail.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

INF = math.inf


@dataclass(frozen=True)
class Snapshot:
    """One backend's cumulative counters at one moment.

    `buckets` are (upper bound in ms, cumulative count) pairs in ascending order, the
    Prometheus convention; the last bound may be `inf`.
    """

    requests: int
    errors: int
    buckets: tuple[tuple[float, int], ...] = ()


@dataclass(frozen=True)
class Window:
    """What one backend did between two snapshots."""

    requests: int
    errors: int
    buckets: tuple[tuple[float, int], ...] = ()  # (upper bound ms, cumulative count)

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    def quantile(self, q: float) -> float | None:
        """The upper bound of the bucket holding the q-quantile (ms); None without data."""
        if not self.buckets:
            return None
        total = self.buckets[-1][1]
        if total <= 0:
            return None
        rank = math.ceil(q * total)
        finite = [b for b, _ in self.buckets if b != INF]
        for bound, count in self.buckets:
            if count >= rank:
                # beyond the last finite bound we only know "more than that"
                return bound if bound != INF else (finite[-1] if finite else None)
        return None

    @property
    def p99(self) -> float | None:
        return self.quantile(0.99)

    @property
    def p50(self) -> float | None:
        return self.quantile(0.50)


def window(before: Snapshot | None, after: Snapshot) -> Window:
    """`after - before`; a counter that went down means the router restarted: use `after`."""
    if before is None or after.requests < before.requests:
        return Window(after.requests, after.errors, after.buckets)
    old = dict(before.buckets)
    buckets = tuple((b, max(0, c - old.get(b, 0))) for b, c in after.buckets)
    return Window(after.requests - before.requests, max(0, after.errors - before.errors), buckets)


def merge(windows: Iterable[Window]) -> Window:
    """Several backends as one (the "current" side may be more than one backend)."""
    requests = errors = 0
    acc: dict[float, int] = {}
    for w in windows:
        requests += w.requests
        errors += w.errors
        for b, c in w.buckets:
            acc[b] = acc.get(b, 0) + c
    return Window(requests, errors, tuple(sorted(acc.items())))


@dataclass(frozen=True, kw_only=True)
class Gate:
    """Limits for one canary; validated here so a typo fails before any weight moves."""

    max_error_rate: float = 0.01
    max_p99_ratio: float = 1.5
    min_requests: int = 100
    p99_floor_ms: float = 10.0  # below it a p99 always passes: 3 ms vs 1 ms on loopback is noise
    max_p99_ms: float | None = None  # a fixed limit besides the ratio (Flagger's request-duration)

    def __post_init__(self) -> None:
        if not 0.0 <= self.max_error_rate <= 1.0:
            raise ValueError(f"max error rate {self.max_error_rate}: give 0..100% (e.g. 1%)")
        if self.max_p99_ratio < 1.0:
            raise ValueError(f"max p99 ratio {self.max_p99_ratio}: give 1.0 or more (e.g. 1.5)")
        if self.min_requests < 1:
            raise ValueError(f"min requests {self.min_requests}: give at least 1")
        if self.p99_floor_ms < 0:
            raise ValueError(f"p99 floor {self.p99_floor_ms} ms: give 0 or more")
        if self.max_p99_ms is not None and self.max_p99_ms <= 0:
            raise ValueError(f"max p99 {self.max_p99_ms} ms: give a positive duration, e.g. 250ms")


@dataclass(frozen=True)
class Verdict:
    decision: str  # wait | promote | rollback
    reasons: tuple[str, ...]
    candidate: Window
    current: Window
    current_p99: float | None = None  # what the candidate was compared with
    notes: tuple[str, ...] = field(default=())

    def explain(self) -> str:
        return "; ".join(self.reasons + self.notes)


def _pct(x: float) -> str:
    return f"{x * 100:.2f}%"


def _ms(x: float | None) -> str:
    return "n/a" if x is None else f"{x:g} ms"


def judge(gate: Gate, *, candidate: Window, current: Window, elapsed: float, interval: float,
          baseline_p99: float | None = None) -> Verdict:
    """Decide one step of the foreground canary from the candidate's and the current backend's
    windows: `check` once the interval and the request count are there, `wait` before.

    `baseline_p99` is the current backend's p99 from an earlier window, used when the
    current backend served too few requests in this one (at 100% it serves none).
    """
    enough = candidate.requests >= gate.min_requests
    if enough and candidate.error_rate > gate.max_error_rate:
        c = check(gate, candidate=candidate, current=current, baseline_p99=baseline_p99)
        return Verdict("rollback", (c.why,), candidate, current)
    if elapsed < interval or not enough:
        waiting = []
        if elapsed < interval:
            waiting.append(f"{elapsed:.0f}s of {interval:.0f}s")
        if not enough:
            waiting.append(f"{candidate.requests} of {gate.min_requests} candidate requests")
        return Verdict("wait", ("waiting: " + ", ".join(waiting),), candidate, current)
    c = check(gate, candidate=candidate, current=current, baseline_p99=baseline_p99)
    return Verdict("promote" if c.outcome == "pass" else "rollback", c.reasons, candidate, current,
                   c.current_p99, c.notes)


@dataclass(frozen=True)
class Check:
    """One analysis check over one window (the rollout controller's unit, Flagger's "check")."""

    outcome: str  # pass | fail | inconclusive (too little candidate traffic to say)
    reasons: tuple[str, ...]
    candidate: Window
    current: Window
    current_p99: float | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def why(self) -> str:
        return "; ".join(self.reasons + self.notes)


def check(gate: Gate, *, candidate: Window, current: Window, baseline_p99: float | None = None) -> Check:
    """Judge one window: error rate, then p99 against the current backend's (or, with
    `max_p99_ms`, against a fixed limit). Fewer than `min_requests` candidate requests is
    *inconclusive*, never a failure: no traffic is not evidence of a bad candidate."""
    rate = candidate.error_rate
    if candidate.requests < gate.min_requests:
        return Check("inconclusive", (f"only {candidate.requests} candidate requests "
                                      f"(need {gate.min_requests})",), candidate, current)
    if rate > gate.max_error_rate:
        return Check("fail", (
            f"candidate error rate {_pct(rate)} ({candidate.errors}/{candidate.requests}) "
            f"is over the limit {_pct(gate.max_error_rate)}",), candidate, current)
    reasons = [f"error rate {_pct(rate)} ≤ {_pct(gate.max_error_rate)} over {candidate.requests} requests"]
    notes: list[str] = []
    cand_p99 = candidate.p99
    if gate.max_p99_ms is not None and cand_p99 is not None and cand_p99 > gate.max_p99_ms:
        return Check("fail", (f"candidate p99 {_ms(cand_p99)} is over the limit {_ms(gate.max_p99_ms)}",),
                     candidate, current)
    cur_p99 = current.p99 if current.requests >= min(gate.min_requests, 20) else None
    if cur_p99 is None:
        cur_p99 = baseline_p99
        if cur_p99 is not None:
            notes.append(f"current backend idle in this window: p99 compared with its earlier {_ms(cur_p99)}")
    if cand_p99 is None or cur_p99 is None:
        notes.append("no latency histogram to compare p99")
    elif cand_p99 <= gate.p99_floor_ms:
        reasons.append(f"p99 {_ms(cand_p99)} under the {_ms(gate.p99_floor_ms)} floor")
    else:
        limit = gate.max_p99_ratio * max(cur_p99, gate.p99_floor_ms)
        ratio = cand_p99 / cur_p99 if cur_p99 else INF
        if cand_p99 > limit:
            return Check("fail", (
                f"candidate p99 {_ms(cand_p99)} is {ratio:.2f}× the current backend's "
                f"{_ms(cur_p99)} (limit {gate.max_p99_ratio:g}×)",), candidate, current, cur_p99)
        reasons.append(f"p99 {_ms(cand_p99)} vs {_ms(cur_p99)} ({ratio:.2f}× ≤ {gate.max_p99_ratio:g}×)")
    return Check("pass", tuple(reasons), candidate, current, cur_p99, tuple(notes))


# -- parsing the command line's human units ------------------------------------------------

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")


def parse_duration(text: str) -> float:
    """'30s', '2m', '500ms', '1h' or bare seconds → seconds."""
    m = _DURATION.match(text)
    if not m:
        raise ValueError(f"duration {text!r}: use a number with ms, s, m or h (e.g. 30s)")
    value = float(m.group(1))
    return value * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]


def parse_rate(text: str) -> float:
    """'1%', '0.5%' or a fraction '0.01' → fraction."""
    t = text.strip()
    try:
        value = float(t[:-1]) / 100 if t.endswith("%") else float(t)
    except ValueError:
        raise ValueError(f"rate {text!r}: give a percentage like 1% or a fraction like 0.01") from None
    if not 0 <= value <= 1:
        raise ValueError(f"rate {text!r}: must be between 0% and 100%")
    return value


def parse_steps(text: str) -> list[int]:
    """'1,5,25,50,100' → [1, 5, 25, 50, 100]: increasing weights in 1..100."""
    try:
        steps = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ValueError(f"steps {text!r}: give comma-separated percentages like 1,5,25,50,100") from None
    if not steps:
        raise ValueError("steps: give at least one percentage, e.g. 10,50,100")
    if any(not 1 <= s <= 100 for s in steps):
        raise ValueError(f"steps {text!r}: each step is a percentage in 1..100")
    if any(b <= a for a, b in zip(steps, steps[1:], strict=False)):
        raise ValueError(f"steps {text!r}: steps must increase")
    return steps


def cumulative(counts: Sequence[tuple[float, int]]) -> tuple[tuple[float, int], ...]:
    """Per-bucket counts → cumulative counts (for routers that report them per bucket)."""
    total = 0
    out = []
    for bound, count in sorted(counts):
        total += count
        out.append((bound, total))
    return tuple(out)
