"""The foreground canary loop: step the candidate's weight up, judge each step, promote or roll back.

Place in the flow: `strangler canary` and the demo call `run_canary` with a `Control`
(the running router through its admin API, or a fake in tests). Each step sets the
weight (the router ledgers it, with the decision in the reason), takes a cumulative
snapshot, and asks `rollout.gate.judge` about the window since then until it says promote
or rollback. A rollback sets the candidate to 0. A KeyboardInterrupt leaves the weight
where it is and the result says so: a human takes over from a known state. With a `Board`
the loop shows its step, countdown and verdict on the dashboard and obeys its pause, resume
and abort buttons (an abort is a rollback asked for by a person).

Too little candidate traffic by `max_wait` is *inconclusive*, not a rollback: with a `Board`
the loop pauses at that step until resumed (the window starts again) or aborted; without one
it ends `inconclusive`, weights left where they are, and says what to do. The persisted,
detached form of this (a controller that outlives the terminal) is rollout/controller.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from rollout.gate import Gate, Snapshot, Verdict, judge, merge, window


class Control(Protocol):
    """What the loop needs from a router."""

    def snapshot(self, route: str) -> tuple[dict[str, int], dict[str, Snapshot]]: ...

    def set_weight(self, route: str, backend: str, weight: int, reason: str) -> dict[str, int]: ...

    def note(self, route: str, weights: dict[str, int], reason: str) -> None: ...


class Board(Protocol):
    """Where the loop shows its state and takes requests (the dashboard's pause/abort buttons;
    router/rollouts.py over files)."""

    def publish(self, doc: dict[str, Any]) -> None: ...

    def command(self) -> dict[str, Any] | None: ...


@dataclass
class StepRecord:
    weight: int
    decision: str
    why: str
    seconds: float
    candidate_requests: int
    candidate_errors: int
    candidate_p99_ms: float | None
    current_requests: int
    current_p99_ms: float | None


@dataclass
class CanaryResult:
    route: str
    candidate: str
    outcome: str  # promoted | rolled_back | aborted (from the dashboard) | inconclusive | interrupted
    weights: dict[str, int]
    why: str
    steps: list[StepRecord] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return {"promoted": 0, "rolled_back": 3, "aborted": 3, "inconclusive": 3,
                "interrupted": 130}[self.outcome]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, kw_only=True)
class CanaryPlan:
    route: str
    candidate: str
    steps: tuple[int, ...]
    interval: float
    gate: Gate
    max_wait: float  # per step: waiting longer for min requests is inconclusive (a pause)
    poll: float = 1.0
    reason: str = ""  # why this canary (`canary --reason`): in every ledger line it causes

    def __post_init__(self) -> None:
        if self.interval <= 0:
            raise ValueError(f"interval {self.interval}s: give a positive duration, e.g. 30s")
        if self.max_wait < self.interval:
            raise ValueError(f"max wait {self.max_wait:g}s is shorter than the interval {self.interval:g}s")


def run_canary(control: Control, plan: CanaryPlan, *, say: Callable[[str], None] = print,
               clock: Callable[[], float] = time.monotonic,
               sleep: Callable[[float], None] = time.sleep,
               board: Board | None = None) -> CanaryResult:
    """Step the candidate up as `plan` says. With a `board`, every poll publishes the state
    (step, when it started, the gate's last verdict) and takes a request: pause stops the
    clock and the judging until resume (the step's window then starts again), abort sets the
    candidate to 0 like a rollback."""
    route, cand = plan.route, plan.candidate
    shown: dict[str, Any] = {"route": route, "candidate": cand, "steps": [], "step": 0, "weight": None,
                             "interval": plan.interval, "max_wait": plan.max_wait,
                             "min_requests": plan.gate.min_requests, "gate": _limits(plan.gate),
                             "state": "running", "verdict": None, "step_started": None}

    def show(**changes: Any) -> None:
        shown.update(changes)
        if board is not None:
            board.publish(dict(shown))

    def asked() -> dict[str, Any] | None:
        return board.command() if board is not None else None

    try:
        return _run(control, plan, say=say, clock=clock, sleep=sleep, show=show, show_quietly=shown.update,
                    asked=asked,
                    steerable=board is not None)
    finally:
        if shown["state"] in ("running", "paused") and shown["steps"]:
            show(state="interrupted")


def _run(control: Control, plan: CanaryPlan, *, say: Callable[[str], None], clock: Callable[[], float],
         sleep: Callable[[float], None], show: Callable[..., None], show_quietly: Callable[..., None],
         asked: Callable[[], dict[str, Any] | None], steerable: bool) -> CanaryResult:
    route, cand = plan.route, plan.candidate
    weights, _ = control.snapshot(route)
    if cand not in weights:
        raise ValueError(f"route {route!r} has no backend {cand!r}; it has {', '.join(weights)}")
    current = [b for b in weights if b != cand]
    if not current:
        raise ValueError(f"route {route!r} has only {cand!r}: nothing to compare the candidate with")
    result = CanaryResult(route, cand, "interrupted", dict(weights), "")
    start_weight = weights[cand]
    steps = [s for s in plan.steps if s > start_weight]
    if len(steps) < len(plan.steps):
        say(f"{cand} already serves {start_weight}% of {route}: skipping steps ≤ {start_weight}% "
            "(lowering a weight would move users back)")
        if not steps and start_weight > 0:
            steps = [start_weight]  # nothing left to raise: still judge where it stands
    baseline_p99: float | None = None
    # not published yet: the first document a dashboard sees is a step with its start time
    # (a "running" with no countdown raced the browser test)
    show_quietly(steps=steps, weight=start_weight)
    try:
        for n, step in enumerate(steps, 1):
            label = f"canary {route} → {cand} step {n}/{len(steps)}: {step}%" + (
                f" ({plan.reason})" if plan.reason else "")
            if step != result.weights.get(cand):
                result.weights = control.set_weight(route, cand, step, f"{label} (gate: {_limits(plan.gate)})")
            say(f"{label}: weights now {_fmt(result.weights)}; judging for ≥ {plan.interval:g}s")
            _, before = control.snapshot(route)
            t0 = clock()
            show(step=n, weight=step, step_started=time.time(), verdict=None)
            while True:
                sleep(plan.poll)
                request = asked()
                if request is not None and request.get("action") == "pause":
                    request = _paused(control, route, result, step, sleep, show, asked, request)
                    _, before = control.snapshot(route)  # judge the step afresh from here
                    t0 = clock()
                    show(state="running", step_started=time.time())
                if request is not None and request.get("action") == "abort":
                    return _abort(control, route, cand, step, request, result, say, show)
                _, after = control.snapshot(route)
                elapsed = clock() - t0
                cand_w = window(before.get(cand), after.get(cand, Snapshot(0, 0)))
                cur_w = merge(window(before.get(b), after.get(b, Snapshot(0, 0))) for b in current)
                verdict = judge(plan.gate, candidate=cand_w, current=cur_w, elapsed=elapsed,
                                interval=plan.interval, baseline_p99=baseline_p99)
                if verdict.decision == "wait" and elapsed >= plan.max_wait:
                    why = (f"inconclusive at {step}%: only {cand_w.requests} candidate requests in "
                           f"{elapsed:.0f}s (need {plan.gate.min_requests}). Send more traffic "
                           f"(`strangler traffic`), or lower --min-requests")
                    show(verdict={"decision": "inconclusive", "why": why})
                    if not steerable:  # nobody could resume a pause: stop, weights kept
                        weights, _ = control.snapshot(route)
                        result.weights, result.outcome = weights, "inconclusive"
                        result.why = (f"{why}; {route} stays at {_fmt(weights)}. Run the canary again, or "
                                      f"undo with `strangler shift {route} --to {cand} --weight 0`")
                        control.note(route, weights, f"canary {route} → {cand} inconclusive at {step}%: "
                                                     "weights left as they are")
                        show(state="inconclusive", why=result.why)
                        return result
                    say(f"{why}. Paused at {step}%: Resume or Abort on the dashboard "
                        "(/_strangler/ui), or Ctrl-C to stop with the weights kept")
                    request = _paused(control, route, result, step, sleep, show, asked,
                                      {"action": "pause", "actor": "the gate (inconclusive)"})
                    if request is not None:  # an abort while paused
                        return _abort(control, route, cand, step, request, result, say, show)
                    _, before = control.snapshot(route)
                    t0 = clock()
                    show(state="running", step_started=time.time(), verdict=None)
                    continue
                show(verdict={"decision": verdict.decision, "why": verdict.explain()})
                if verdict.decision != "wait":
                    break
            result.steps.append(_record(step, verdict, elapsed))
            if verdict.decision == "rollback":
                why = verdict.explain()
                say(f"ROLLBACK at {step}%: {why}")
                result.weights = control.set_weight(route, cand, 0, f"canary rollback at {step}%: {why}")
                result.outcome, result.why = "rolled_back", why
                show(state="rolled_back", weight=0, why=why)
                say(f"{route} weights now {_fmt(result.weights)}")
                return result
            if verdict.current_p99 is not None:
                baseline_p99 = verdict.current_p99
            say(f"step {step}% passed: {verdict.explain()}")
        result.outcome = "promoted"
        result.why = f"{cand} serves {result.weights.get(cand, 0)}% of {route}; every step passed the gate"
        control.note(route, result.weights, f"canary {route} → {cand} complete: {result.why}")
        show(state="promoted", why=result.why)
        say(f"PROMOTED: {result.why}")
        return result
    except KeyboardInterrupt:
        weights, _ = control.snapshot(route)
        result.weights = weights
        result.why = (f"interrupted by the operator; {route} stays at {_fmt(weights)}. "
                      f"Continue with `strangler canary {route} --to {cand} ...`, or undo with "
                      f"`strangler shift {route} --to {cand} --weight 0`")
        control.note(route, weights, f"canary {route} → {cand} interrupted by the operator; weights left as they are")
        say(result.why)
        return result


def _abort(control: Control, route: str, cand: str, step: int, request: dict[str, Any],
           result: CanaryResult, say: Callable[[str], None], show: Callable[..., None]) -> CanaryResult:
    who = f"{request.get('actor', 'dashboard')}" + (f": {request['reason']}" if request.get("reason") else "")
    why = f"aborted by the operator ({who})"
    say(f"ABORT at {step}%: {why}")
    result.weights = control.set_weight(route, cand, 0, f"canary aborted at {step}% ({who})")
    result.outcome, result.why = "aborted", why
    show(state="aborted", weight=0, why=why)
    return result


def _paused(control: Control, route: str, result: CanaryResult, step: int, sleep: Callable[[float], None],
            show: Callable[..., None], asked: Callable[[], dict[str, Any] | None],
            request: dict[str, Any]) -> dict[str, Any] | None:
    """Hold at `step` until a resume (returns None) or an abort (returns it); ledgered."""
    control.note(route, result.weights, f"canary {route} paused at {step}% by {request.get('actor', 'dashboard')}")
    show(state="paused")
    while True:
        sleep(0.2)
        then = asked()
        if then is None:
            continue
        if then.get("action") == "abort":
            return then
        if then.get("action") == "resume":
            control.note(route, result.weights, f"canary {route} resumed at {step}% by {then.get('actor', 'dashboard')}")
            return None


def _record(step: int, v: Verdict, elapsed: float) -> StepRecord:
    return StepRecord(step, v.decision, v.explain(), round(elapsed, 1), v.candidate.requests,
                      v.candidate.errors, v.candidate.p99, v.current.requests, v.current_p99)


def _fmt(weights: dict[str, int]) -> str:
    return " ".join(f"{k}={v}%" for k, v in weights.items())


def _limits(g: Gate) -> str:
    return (f"errors ≤ {g.max_error_rate * 100:g}%, p99 ≤ {g.max_p99_ratio:g}× current, "
            f"≥ {g.min_requests} requests")
