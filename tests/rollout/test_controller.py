"""The rollout controller against a simulated router on a fake clock: every way a rollout ends,
and a controller that dies mid-step and is replaced."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from rollout.controller import RolloutError
from rollout.spec import Step, Webhook
from tests.rollout.fakes import FakeRouter, Rig, spec

TESTERS = Step(kind="setHeaderRoute", name="testers", header="X-Canary", match="exact", value="yes")
MIRROR = Step(kind="setMirrorRoute", name="compare", percent=50.0, methods=("GET",))


def test_healthy_candidate_is_promoted_step_by_step(tmp_path: Path) -> None:
    rig = Rig(tmp_path, spec())
    doc = rig.run()
    assert doc["state"] == "promoted"
    assert [w for w, _ in rig.router.changes] == [10, 50, 100]
    assert all("rollout products → catalog step" in r and "(test)" in r for _, r in rig.router.changes)
    events = [e["event"] for e in rig.ledger()]
    assert events.count("step") == 6 and events.count("analysis") == 3 and events[-1] == "promoted"
    assert [h["outcome"] for h in doc["history"]] == ["pass"] * 3


def test_after_the_last_step_the_candidate_gets_everything(tmp_path: Path) -> None:
    rig = Rig(tmp_path, spec("10,50"))  # as Argo: the end of the steps is full promotion
    assert rig.run()["state"] == "promoted"
    assert [w for w, _ in rig.router.changes] == [10, 50, 100]


def test_an_injected_fault_rolls_back_by_itself(tmp_path: Path) -> None:
    rig = Rig(tmp_path, spec(threshold=1), FakeRouter(fail_rate=0.2))
    doc = rig.run()
    assert doc["state"] == "rolled_back" and rig.router.weights["catalog"] == 0
    assert "error rate" in doc["why"] and "threshold 1" in doc["why"]
    assert [w for w, _ in rig.router.changes] == [10, 0]
    assert rig.ledger()[-1]["event"] == "rolled_back"


def test_too_little_traffic_is_inconclusive_and_pauses_with_what_to_do(tmp_path: Path) -> None:
    rig = Rig(tmp_path, spec(min_requests=50), FakeRouter(rps=10))  # 1 candidate request/s at 10%
    doc = rig.run()
    assert doc["state"] == "paused" and doc["weight"] == 10  # not rolled back
    assert [w for w, _ in rig.router.changes] == [10]
    assert doc["verdict"]["decision"] == "inconclusive" and doc["failed_checks"] == 0
    assert "only 30 candidate requests in 30s (need 50)" in doc["pause_reason"]
    assert "strangler rollout resume products" in doc["pause_reason"]
    # paused means paused: time passes, nothing moves
    for _ in range(100):
        doc = rig.step()
    assert doc["state"] == "paused" and rig.router.changes == [(10, rig.router.changes[0][1])]
    # more traffic, a resume from another terminal: a fresh window, then promotion
    rig.router.rps = 1000
    rig.store.request("resume", actor="bob")
    doc = rig.run(until=("promoted", "rolled_back"))
    assert doc["state"] == "promoted"


def test_status_shows_what_an_analysis_waits_for_and_counts_down_to_the_pause(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cli.main import app
    from control.rollouts import describe

    state = tmp_path / "state"
    monkeypatch.setenv("STRANGLER_STATE_DIR", str(state))
    routes = tmp_path / "routes.yaml"
    routes.write_text("ledger: ledger.jsonl\n")
    # 1 candidate request/s at 10%; 20 needed; interval 10 s, so the window may grow to 30 s
    rig = Rig(state / "rollouts", spec(min_requests=20), FakeRouter(rps=10))
    rig.controller.tick()
    for _ in range(7):
        doc = rig.step()
    assert doc["waiting"] == {"for": "candidate_requests", "need": 20, "has": 7,
                              "inconclusive_at": doc["window"]["since"] + 30}
    lines = describe(doc, rig.clock(), alive=True)
    assert "waiting for ≥ 20 candidate requests (has 7) (pauses as inconclusive in 23s)" in lines
    shown = CliRunner().invoke(app, ["rollout", "status", "products", "--routes", str(routes)])
    assert shown.exit_code == 0 and "waiting for ≥ 20 candidate requests (has 7)" in shown.output
    assert "pauses as inconclusive in" in shown.output
    rig.router.rps = 1000  # enough traffic: the window still runs, but waits for no request
    doc = rig.step()
    assert doc["step"] == 2 and doc["progress"]["window_s"] < 10
    assert doc["waiting"] is None and not any(line.startswith("waiting") for line in describe(doc, rig.clock(), alive=True))


def test_threshold_counts_failed_checks_before_rolling_back(tmp_path: Path) -> None:
    rig = Rig(tmp_path, spec(threshold=3), FakeRouter(cand_ms=50.0))  # 50 ms vs 2 ms
    doc = rig.run()
    assert doc["state"] == "rolled_back" and "3 failed checks (threshold 3)" in doc["why"]
    assert "p99" in doc["why"]
    failed = [e for e in rig.ledger() if e["event"] == "check-failed"]
    assert [e["reason"].split(" before")[0] for e in failed] == [
        "check failed (1 of 3", "check failed (2 of 3", "check failed (3 of 3"]
    # a check is one interval: the third failure comes three intervals after the step began
    fails = [h for h in doc["history"] if h["outcome"] == "fail"]
    assert fails[2]["time"] - fails[0]["time"] == pytest.approx(20.0, abs=1.0)

    rig1 = Rig(tmp_path / "one", spec(threshold=1), FakeRouter(cand_ms=50.0))
    assert rig1.run()["failed_checks"] == 1


def test_a_killed_controller_is_replaced_and_resumes_the_same_step(tmp_path: Path) -> None:
    rig = Rig(tmp_path, spec())
    doc = rig.controller.tick()
    while not (doc["step_kind"] == "analysis" and doc["weight"] == 50 and doc["progress"]
               and doc["progress"]["window_s"] >= 4):
        doc = rig.step()
    window_since = doc["window"]["since"]
    # kill -9: the object is gone; a new controller has only the file
    rig.controller = rig.new_controller()
    doc = rig.step()
    assert doc["step_kind"] == "analysis" and doc["weight"] == 50
    assert doc["window"]["since"] == window_since  # the same window, not a fresh step
    assert doc["progress"]["window_s"] >= 5
    assert rig.run()["state"] == "promoted"
    assert [w for w, _ in rig.router.changes] == [10, 50, 100]  # no step repeated, none skipped


def test_killed_between_the_weight_change_and_saving_the_file_sends_no_second_change(tmp_path: Path) -> None:
    rig = Rig(tmp_path, spec())
    real_save = rig.store.save

    def dies_after_setting_50(doc: dict[str, Any]) -> None:
        if doc["weight"] == 50:
            raise SystemExit("kill -9")  # the file keeps the previous poll's state
        real_save(doc)

    rig.store.save = dies_after_setting_50  # type: ignore[method-assign]
    with pytest.raises(SystemExit):
        rig.run()
    assert rig.router.weights["catalog"] == 50 and json.loads(rig.store.path.read_text())["weight"] == 10
    rig.store.save = real_save  # type: ignore[method-assign]
    rig.controller = rig.new_controller()
    assert rig.run()["state"] == "promoted"
    assert [w for w, _ in rig.router.changes] == [10, 50, 100]


def test_a_router_blip_holds_the_step_instead_of_failing_it(tmp_path: Path) -> None:
    rig = Rig(tmp_path, spec(threshold=1))
    doc = rig.run(until=("running",))
    rig.router.down = True
    for _ in range(30):
        doc = rig.step()
    assert doc["state"] == "running" and "cannot reach the router" in doc["verdict"]["why"]
    assert sum(1 for e in rig.ledger() if e["event"] == "router") == 1  # said once, not per poll
    rig.router.down = False
    assert rig.run()["state"] == "promoted"


def test_timed_pause_counts_down_and_approval_waits_for_promote(tmp_path: Path) -> None:
    s = spec("10", extra=(Step(kind="pause", duration=30.0), Step(kind="approval")))
    rig = Rig(tmp_path, s)
    doc = rig.run(until=("paused",))
    assert doc["step_kind"] == "approval" and "strangler rollout promote products" in doc["pause_reason"]
    pause_started = next(e for e in rig.ledger() if "pause 30s" in e["reason"])
    approval = next(e for e in rig.ledger() if "approval" in e["reason"])
    assert approval["ts"] >= pause_started["ts"]  # (real time; the fake clock is checked below)
    assert any(h for h in doc["history"])
    for _ in range(50):
        doc = rig.step()
    assert doc["state"] == "paused" and rig.router.weights["catalog"] == 10
    rig.store.request("promote", actor="alice")
    doc = rig.run(until=("promoted",))
    assert rig.router.weights["catalog"] == 100


def test_timed_pause_deadline_is_kept_across_a_restart(tmp_path: Path) -> None:
    rig = Rig(tmp_path, spec("10", extra=(Step(kind="pause", duration=30.0),)))
    doc = rig.controller.tick()
    while doc["step_kind"] != "pause":
        doc = rig.step()
    deadline = doc["deadline"]
    rig.step(10)
    rig.controller = rig.new_controller()
    doc = rig.step(1)
    assert doc["step_kind"] == "pause" and doc["deadline"] == deadline
    doc = rig.step(deadline - rig.clock.t + 0.5)
    assert doc["state"] == "promoted"


def test_abort_and_full_promote(tmp_path: Path) -> None:
    rig = Rig(tmp_path, spec())
    rig.run(until=("running",))
    rig.step(3)
    rig.store.request("abort", actor="carol", reason="pager went off")
    doc = rig.step()
    assert doc["state"] == "aborted" and rig.router.weights["catalog"] == 0
    assert "aborted by carol (pager went off)" in doc["why"]

    rig2 = Rig(tmp_path / "b", spec())
    rig2.run(until=("running",))
    rig2.store.request("promote", actor="dave", full=True)
    doc = rig2.step()
    assert doc["state"] == "promoted" and [w for w, _ in rig2.router.changes] == [10, 100]


# -- webhooks: a real HTTP server on loopback ---------------------------------------------

class Hooks(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Hooks.received.append({"path": self.path, **body})
        if self.path == "/slow":
            time.sleep(1.0)
        code = 500 if self.path == "/fail" else 200
        self.send_response(code)
        self.send_header("Content-Length", "7")
        self.end_headers()
        self.wfile.write(b"nope!!\n" if code == 500 else b"ok     ")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def hook_server() -> Iterator[str]:
    Hooks.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hooks)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_failing_pre_webhook_fails_the_check_and_rolls_back(tmp_path: Path, hook_server: str) -> None:
    s = spec(threshold=2, webhooks=(Webhook(name="smoke", url=f"{hook_server}/fail", when="pre"),))
    rig = Rig(tmp_path, s)
    doc = rig.run()
    assert doc["state"] == "rolled_back" and rig.router.weights["catalog"] == 0
    assert "webhook 'smoke'" in doc["why"] and "HTTP 500" in doc["why"]
    assert len(Hooks.received) == 2  # one per check, paced by the interval, not per poll
    assert Hooks.received[0]["phase"] == "pre" and Hooks.received[0]["route"] == "products"


def test_passing_webhooks_are_called_before_and_after_each_analysis(tmp_path: Path, hook_server: str) -> None:
    s = spec(webhooks=(Webhook(name="load", url=f"{hook_server}/ok", when="pre"),
                       Webhook(name="accept", url=f"{hook_server}/ok", when="post")))
    rig = Rig(tmp_path, s)
    assert rig.run()["state"] == "promoted"
    assert [(h["phase"], h["weight"]) for h in Hooks.received] == [
        ("pre", 10), ("post", 10), ("pre", 50), ("post", 50), ("pre", 100), ("post", 100)]


def test_a_webhook_timeout_fails_the_check(tmp_path: Path, hook_server: str) -> None:
    s = spec(threshold=1, webhooks=(Webhook(name="slowpoke", url=f"{hook_server}/slow", when="post",
                                            timeout=0.2),))
    doc = Rig(tmp_path, s).run()
    assert doc["state"] == "rolled_back" and "no answer within 0.2s" in doc["why"]


# -- steering from a second terminal: the real CLI commands -------------------------------

def test_pause_resume_abort_from_another_terminal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cli.main import app

    state = tmp_path / "state"
    monkeypatch.setenv("STRANGLER_STATE_DIR", str(state))
    routes = tmp_path / "routes.yaml"
    routes.write_text("ledger: ledger.jsonl\n")
    rig = Rig(state / "rollouts", spec())
    rig.store.ledger_path = tmp_path / "ledger.jsonl"
    rig.run(until=("running",))

    def terminal(*args: str) -> Any:
        """Another `strangler rollout …` call while the controller keeps ticking here."""
        result: list[Any] = []
        t = threading.Thread(target=lambda: result.append(
            CliRunner().invoke(app, ["rollout", *args, "products", "--routes", str(routes)])))
        t.start()
        while t.is_alive():
            rig.step(0.5)
            t.join(0.02)
        return result[0]

    paused = terminal("pause", "--reason", "lunch")
    assert paused.exit_code == 0, paused.output
    assert "pause → paused (paused by" in paused.output and "(lunch)" in paused.output
    held = rig.router.weights["catalog"]
    for _ in range(60):
        rig.step()
    assert rig.router.weights["catalog"] == held
    status = CliRunner().invoke(app, ["rollout", "status", "products", "--routes", str(routes)])
    assert status.exit_code == 0 and "products → catalog: paused" in status.output
    assert "paused: paused by" in status.output
    resumed = terminal("resume")
    assert resumed.exit_code == 0 and "resume → running" in resumed.output
    aborted = terminal("abort", "--reason", "enough")
    assert aborted.exit_code == 0 and "abort → aborted" in aborted.output
    assert rig.router.weights["catalog"] == 0
    again = CliRunner().invoke(app, ["rollout", "pause", "products", "--routes", str(routes)])
    assert again.exit_code == 1 and "already aborted" in again.output
    controls = [e for e in rig.ledger() if e.get("kind") == "rollout-control"]
    assert [e["action"] for e in controls] == ["pause", "resume", "abort"]


# -- managed routes: setHeaderRoute / setMirrorRoute -----------------------------------------

def routed(first: tuple[Step, ...], rest: str = "10,100") -> Any:
    """A spec whose first steps are `first` (header route, mirror), then the usual weights."""
    s = spec(rest)
    return type(s)(route=s.route, candidate=s.candidate, steps=first + s.steps, gate=s.gate,
                   threshold=s.threshold, reason=s.reason)


def test_header_route_and_mirror_are_set_then_removed_when_promoted(tmp_path: Path) -> None:
    rig = Rig(tmp_path, routed((TESTERS, MIRROR, Step(kind="approval"))))
    doc = rig.run()
    assert doc["state"] == "paused" and rig.router.changes == []  # at the approval: routes, no weight
    assert rig.router.header_routes == {"testers": {"name": "testers", "header": "X-Canary", "exact": "yes",
                                                    "to": "catalog"}}
    assert rig.router.shadow == {"to": "catalog", "percent": 50.0, "methods": ["GET"]}
    assert doc["managed_routes"]["header"].keys() == {"testers"} and doc["managed_routes"]["mirror"]["name"] == "compare"
    from control.rollouts import describe

    assert any("managed routes: header route testers (X-Canary exact 'yes' → catalog); mirror compare "
               "(50% of GET → catalog)" in line for line in describe(doc, rig.clock(), alive=True))
    rig.store.request("promote", actor="ann")
    doc = rig.run(until=("promoted", "rolled_back"))
    assert doc["state"] == "promoted" and [w for w, _ in rig.router.changes] == [10, 100]
    assert rig.router.header_routes == {} and rig.router.shadow is None
    assert rig.router.route_changes == ["set testers", "set mirror", "clear testers", "clear mirror"]
    assert doc["managed_routes"] == {"header": {}, "mirror": None}
    removed = [e["reason"] for e in rig.ledger() if e.get("event") == "route"]
    assert removed[-2:] == ["header route testers removed (promoted)", "mirror compare removed (promoted)"]


@pytest.mark.parametrize("how", ["abort", "rollback", "full promote"])
def test_every_other_end_removes_the_managed_routes_too(tmp_path: Path, how: str) -> None:
    router = FakeRouter(fail_rate=0.5 if how == "rollback" else 0.0)
    rig = Rig(tmp_path, routed((TESTERS, MIRROR), "10,50,100"), router)
    rig.run(until=("running",))
    for _ in range(3):
        doc = rig.step()
    assert rig.router.header_routes and rig.router.shadow
    if how == "abort":
        rig.store.request("abort", actor="bob")
    if how == "full promote":
        rig.store.request("promote", actor="bob", full=True)
    doc = rig.run(until=("promoted", "rolled_back", "aborted"))
    assert doc["state"] == {"abort": "aborted", "rollback": "rolled_back", "full promote": "promoted"}[how]
    assert rig.router.header_routes == {} and rig.router.shadow is None and not doc["managed_routes"]["header"]


def test_a_replaced_controller_removes_what_the_killed_one_set(tmp_path: Path) -> None:
    rig = Rig(tmp_path, routed((TESTERS, MIRROR)))
    rig.controller.tick()
    assert rig.router.header_routes and rig.router.shadow  # then kill -9: only the file is left
    rig.controller = rig.new_controller()
    rig.router.routes_down = True  # the router cannot change routes as the rollout ends
    rig.store.request("abort", actor="ann")
    for _ in range(3):
        doc = rig.step()
    assert doc["state"] == "aborted" and rig.router.weights["catalog"] == 0
    assert doc["managed_routes"]["header"] and rig.router.header_routes  # kept, to be removed
    assert "cannot reach the router" in doc["verdict"]["why"]
    rig.router.routes_down = False
    doc = rig.step()
    assert rig.router.header_routes == {} and rig.router.shadow is None
    assert doc["managed_routes"] == {"header": {}, "mirror": None}
    # a controller started now (by `rollout resume`) has nothing left to do: it returns at once
    assert rig.new_controller().run(sleep=lambda _: None)["state"] == "aborted"


def test_a_step_that_removes_a_header_route_removes_it_at_once(tmp_path: Path) -> None:
    s = routed((TESTERS, Step(kind="setHeaderRoute", name="testers")))
    rig = Rig(tmp_path, s)
    rig.controller.tick()
    assert rig.router.route_changes == ["set testers", "clear testers"] and rig.router.header_routes == {}


@pytest.mark.parametrize("how", ["promote", "abort"])
def test_a_mirror_over_a_shadow_from_routes_yaml_puts_that_shadow_back_at_the_end(tmp_path: Path, how: str) -> None:
    rig = Rig(tmp_path, routed((MIRROR,)))
    before = {"to": "catalog", "percent": 0.0, "methods": ["GET", "HEAD"]}
    rig.router.shadow = dict(before)
    rig.controller.tick()
    assert rig.router.shadow == {"to": "catalog", "percent": 50.0, "methods": ["GET"]}
    if how == "abort":
        rig.store.request("abort", actor="ann")
    doc = rig.run(until=("promoted", "aborted"))
    assert rig.router.shadow == before and doc["managed_routes"]["mirror"] is None
    assert rig.router.route_changes == ["set mirror", "set mirror"]  # put back, not removed
    assert any("routes.yaml's shadow put back" in e["reason"] for e in rig.ledger())


def test_a_mirror_over_a_shadow_to_another_backend_fails_the_rollout_and_leaves_it(tmp_path: Path) -> None:
    rig = Rig(tmp_path, routed((MIRROR,)))
    rig.router.shadow = {"to": "search", "percent": 10.0, "methods": ["GET", "HEAD"]}
    doc = rig.run()
    assert doc["state"] == "failed" and "already shadows 10.0% to search" in doc["why"]
    assert rig.router.shadow == {"to": "search", "percent": 10.0, "methods": ["GET", "HEAD"]}
    assert rig.router.route_changes == [] and isinstance(RolloutError(doc["why"]), RolloutError)


# -- an end the router cannot take at once -------------------------------------------------

@pytest.mark.parametrize("how", ["abort", "full promote"])
def test_an_abort_or_promote_while_the_router_is_down_stands_and_is_applied_when_it_answers(
        tmp_path: Path, how: str) -> None:
    rig = Rig(tmp_path, spec())
    rig.run(until=("running",))
    before = dict(rig.router.weights)
    rig.router.down = True
    if how == "abort":
        rig.store.request("abort", actor="ann", reason="looks wrong")
    else:
        rig.store.request("promote", actor="ann", full=True)
    for _ in range(5):
        doc = rig.step()  # the tick survives: the request is not lost with the controller
    end, weight = ("aborted", 0) if how == "abort" else ("promoted", 100)
    assert doc["state"] == end and doc["owed_weight"]["weight"] == weight
    assert rig.router.weights == before and "cannot reach the router" in doc["verdict"]["why"]
    rig.router.down = False
    doc = rig.step()
    assert rig.router.weights["catalog"] == weight and doc["owed_weight"] is None
    assert any(e["event"] == "weight" and f"set to {weight}%" in e["reason"] for e in rig.ledger())
    # settled: a controller started now has nothing left to do
    assert rig.new_controller().run(sleep=lambda _: None)["state"] == end


def test_a_rollback_while_the_router_is_down_takes_the_candidate_to_zero_once_it_answers(tmp_path: Path) -> None:
    rig = Rig(tmp_path, spec(threshold=1), FakeRouter(fail_rate=0.2))
    real_set = rig.router.set_weight

    def refuses_zero(route: str, backend: str, weight: int, reason: str) -> dict[str, int]:
        if weight == 0:
            raise ConnectionError("router restarting")
        return real_set(route, backend, weight, reason)

    rig.router.set_weight = refuses_zero  # type: ignore[method-assign]
    doc = rig.run()
    assert doc["state"] == "rolled_back" and rig.router.weights["catalog"] == 10
    assert doc["owed_weight"]["weight"] == 0  # not marked done with the candidate still serving
    rig.router.set_weight = real_set  # type: ignore[method-assign]
    doc = rig.step()
    assert rig.router.weights["catalog"] == 0 and doc["owed_weight"] is None
