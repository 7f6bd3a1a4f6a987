"""The canary loop against a simulated router: promotion, rollback, Ctrl-C, thin traffic."""

from __future__ import annotations

import math

import pytest

from rollout.canary import CanaryPlan, run_canary
from rollout.gate import Gate, Snapshot, cumulative

BOUNDS = (10.0, 50.0, 100.0, 500.0, math.inf)


class FakeRouter:
    """100 requests per poll split by weight; the candidate fails at `fail_rate`."""

    def __init__(self, *, fail_rate: float = 0.0, cand_ms: float = 10.0, rps: int = 100,
                 interrupt_after: int | None = None) -> None:
        self.weights = {"monolith": 100, "catalog": 0}
        self.counts = {b: [0, 0, [0] * len(BOUNDS)] for b in self.weights}
        self.fail_rate, self.cand_ms, self.rps = fail_rate, cand_ms, rps
        self.changes: list[tuple[dict[str, int], str]] = []
        self.notes: list[str] = []
        self.polls = 0
        self.interrupt_after = interrupt_after

    def tick(self) -> None:
        self.polls += 1
        if self.interrupt_after is not None and self.polls > self.interrupt_after:
            self.interrupt_after = None
            raise KeyboardInterrupt
        for b, w in self.weights.items():
            n = self.rps * w // 100
            c = self.counts[b]
            c[0] += n
            if b == "catalog":
                c[1] += round(n * self.fail_rate)
            ms = self.cand_ms if b == "catalog" else 10.0
            c[2][next(i for i, bound in enumerate(BOUNDS) if ms <= bound)] += n

    def snapshot(self, route: str) -> tuple[dict[str, int], dict[str, Snapshot]]:
        return dict(self.weights), {
            b: Snapshot(c[0], c[1], cumulative(list(zip(BOUNDS, c[2], strict=True))))
            for b, c in self.counts.items()
        }

    def set_weight(self, route: str, backend: str, weight: int, reason: str) -> dict[str, int]:
        self.weights = {"monolith": 100 - weight, "catalog": weight}
        self.changes.append((dict(self.weights), reason))
        return dict(self.weights)

    def note(self, route: str, weights: dict[str, int], reason: str) -> None:
        self.notes.append(reason)


class Clock:
    def __init__(self, router: FakeRouter) -> None:
        self.t = 0.0
        self.router = router

    def __call__(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds
        self.router.tick()


def plan(**kw: object) -> CanaryPlan:
    base: dict[str, object] = dict(route="products", candidate="catalog", steps=(10, 50, 100),
                                   interval=5.0, gate=Gate(min_requests=20), max_wait=60.0)
    base.update(kw)
    return CanaryPlan(**base)  # type: ignore[arg-type]


def run(router: FakeRouter, p: CanaryPlan | None = None):
    clock = Clock(router)
    lines: list[str] = []
    result = run_canary(router, p or plan(), say=lines.append, clock=clock, sleep=clock.sleep)
    return result, lines


def test_healthy_candidate_is_promoted_step_by_step() -> None:
    router = FakeRouter()
    result, lines = run(router)
    assert result.outcome == "promoted" and result.exit_code == 0
    assert [w["catalog"] for w, _ in router.changes] == [10, 50, 100]
    assert all("canary products → catalog step" in reason for _, reason in router.changes)
    assert [s.decision for s in result.steps] == ["promote"] * 3
    assert result.weights == {"monolith": 0, "catalog": 100}
    assert router.notes and "complete" in router.notes[0]
    assert any(line.startswith("PROMOTED") for line in lines)


def test_failing_candidate_rolls_back_to_zero_with_reason() -> None:
    router = FakeRouter(fail_rate=0.2)
    result, lines = run(router)
    assert result.outcome == "rolled_back" and result.exit_code == 3
    assert router.weights == {"monolith": 100, "catalog": 0}
    final_weights, reason = router.changes[-1]
    assert final_weights["catalog"] == 0 and "rollback at 10%" in reason and "error rate" in reason
    assert any(line.startswith("ROLLBACK at 10%") for line in lines)


def test_slow_candidate_rolls_back_on_p99() -> None:
    result, _ = run(FakeRouter(cand_ms=400.0))
    assert result.outcome == "rolled_back" and "p99" in result.why


def test_thin_traffic_is_inconclusive_and_keeps_the_weight() -> None:
    router = FakeRouter(rps=10)  # 1 candidate request per poll at 10%
    result, lines = run(router, plan(gate=Gate(min_requests=500), max_wait=20.0))
    assert result.outcome == "inconclusive" and result.exit_code == 3
    assert "only 20 candidate requests in 20s (need 500)" in result.why and "strangler traffic" in result.why
    assert router.weights["catalog"] == 10  # never a silent rollback for lack of traffic
    assert [w["catalog"] for w, _ in router.changes] == [10]
    assert "inconclusive" in router.notes[-1]


def test_thin_traffic_with_a_dashboard_pauses_until_resumed() -> None:
    router = FakeRouter(rps=10)
    board = Board(router, {60: "resume", 200: "abort"})
    result = run_with(router, board, plan(gate=Gate(min_requests=15), max_wait=10.0, steps=(10, 20)))
    # 10 polls at 1 request: inconclusive and paused at 10%; resumed, the same again; then aborted
    paused = [d for d in board.shown if d["state"] == "paused"]
    assert paused and paused[0]["weight"] == 10 and paused[0]["verdict"]["decision"] == "inconclusive"
    assert [w["catalog"] for w, _ in router.changes] == [10, 0]  # the 0 is the abort's
    assert result.outcome == "aborted" and router.polls >= 200
    assert sum(1 for n in router.notes if "paused at 10%" in n) == 2


def test_reason_goes_into_every_weight_change() -> None:
    router = FakeRouter()
    run(router, plan(reason="catalog v2 read path"))
    assert all("(catalog v2 read path)" in reason for _, reason in router.changes)


def test_ctrl_c_leaves_the_weight_and_says_so() -> None:
    router = FakeRouter(interrupt_after=8)  # during step 2
    result, lines = run(router)
    assert result.outcome == "interrupted" and result.exit_code == 130
    assert router.weights["catalog"] == 50  # not rolled back, not promoted
    assert "stays at monolith=50% catalog=50%" in result.why
    assert "strangler shift products --to catalog --weight 0" in lines[-1]
    assert "interrupted" in router.notes[-1]


def test_steps_at_or_below_current_weight_are_skipped() -> None:
    router = FakeRouter()
    router.weights = {"monolith": 50, "catalog": 50}
    result, lines = run(router)
    assert [w["catalog"] for w, _ in router.changes] == [100]
    assert "skipping steps ≤ 50%" in lines[0]
    assert result.outcome == "promoted"


def test_unknown_backend_is_refused_before_any_change() -> None:
    router = FakeRouter()
    with pytest.raises(ValueError, match="has no backend 'catalgo'; it has monolith, catalog"):
        run(router, plan(candidate="catalgo"))
    assert router.changes == []


def test_candidate_already_at_the_last_step_is_still_judged() -> None:
    router = FakeRouter(fail_rate=0.3)
    router.weights = {"monolith": 0, "catalog": 100}
    result, _ = run(router)
    assert result.outcome == "rolled_back"
    assert router.weights["catalog"] == 0
    assert [w["catalog"] for w, _ in router.changes] == [0]


class Board:
    """The dashboard's side: what the loop published, and requests handed to it at given polls."""

    def __init__(self, router: FakeRouter, requests: dict[int, str]) -> None:
        self.router, self.requests = router, requests
        self.shown: list[dict] = []

    def publish(self, doc: dict) -> None:
        self.shown.append(doc)

    def command(self) -> dict | None:
        action = self.requests.pop(self.router.polls, None)
        return {"action": action, "actor": "alice@dashboard", "reason": "looks odd"} if action else None


def run_with(router: FakeRouter, board: Board, p: CanaryPlan | None = None):
    clock = Clock(router)
    return run_canary(router, p or plan(), say=lambda _: None, clock=clock, sleep=clock.sleep, board=board)


def test_the_loop_publishes_step_countdown_start_and_each_verdict() -> None:
    router = FakeRouter()
    board = Board(router, {})
    result = run_with(router, board)
    assert result.outcome == "promoted"
    assert [d["weight"] for d in board.shown if d["verdict"] is None] == [10, 50, 100]
    assert all(d["step_started"] is not None for d in board.shown)  # never "running" with no countdown
    judged = [d for d in board.shown if d["verdict"]]
    assert judged[0]["state"] == "running" and judged[0]["verdict"]["decision"] == "wait"
    assert judged[0]["step"] == 1 and judged[0]["steps"] == [10, 50, 100] and judged[0]["interval"] == 5.0
    assert judged[0]["step_started"] is not None and "errors ≤ 1%" in judged[0]["gate"]
    assert board.shown[-1]["state"] == "promoted"


def test_abort_from_the_dashboard_sets_the_candidate_to_zero_like_a_rollback() -> None:
    router = FakeRouter()
    board = Board(router, {3: "abort"})
    result = run_with(router, board)
    assert result.outcome == "aborted" and result.exit_code == 3
    assert router.weights == {"monolith": 100, "catalog": 0}
    assert "aborted at 10%" in router.changes[-1][1] and "alice@dashboard: looks odd" in router.changes[-1][1]
    assert board.shown[-1]["state"] == "aborted" and board.shown[-1]["weight"] == 0


def test_pause_holds_the_step_until_resumed_then_judges_it_afresh() -> None:
    router = FakeRouter()
    board = Board(router, {2: "pause", 40: "resume"})
    result = run_with(router, board)
    assert result.outcome == "promoted"
    states = [d["state"] for d in board.shown]
    assert "paused" in states and states.index("paused") < len(states) - 1
    paused_at = states.index("paused")
    assert board.shown[paused_at]["weight"] == 10  # held where it was
    assert any("paused at 10%" in n for n in router.notes) and any("resumed at 10%" in n for n in router.notes)
    # the first step's window began again at the resume, so it needed its full interval after it
    first_step = result.steps[0]
    assert first_step.seconds >= 5.0 and router.polls > 40


def test_pause_then_abort_rolls_back_without_resuming() -> None:
    router = FakeRouter()
    result = run_with(router, Board(router, {2: "pause", 10: "abort"}))
    assert result.outcome == "aborted" and router.weights["catalog"] == 0
