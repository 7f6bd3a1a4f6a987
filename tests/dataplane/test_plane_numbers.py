"""The canary gate on a data plane's own numbers: real nginx and HAProxy write one JSON line per
request, dataplane/numbers.py counts them per route and backend exactly, and a canary driven
through control.planecontrol promotes a healthy candidate and rolls a failing one back to 0 — on
each plane, steering its routes file while dataplane/follow.py keeps the plane on it."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

import pytest

from control.planecontrol import PlaneControl
from dataplane import follow, model, numbers, run
from devstack import free_port
from rollout.canary import CanaryPlan, run_canary
from rollout.gate import Gate
from router import balance, ledger
from tests.dataplane.wire import answers, followed, named_upstreams, needs

USERS = [f"user-{i}" for i in range(400)]


def routes_yaml(ports: dict[str, int], *, candidate: str = "broken") -> str:
    return f"""ledger: ledger.jsonl
upstreams:
  monolith: {{url: "http://127.0.0.1:{ports['monolith']}"}}
  catalog: {{url: "http://127.0.0.1:{ports['catalog']}"}}
  broken: {{url: "http://127.0.0.1:{ports['broken']}"}}
routes:
  - name: shop
    match: {{prefix: /}}
    backends: {{monolith: 50, {candidate}: 50}}
    cohort: {{header: X-User}}
  - name: api
    match: {{prefix: /api}}
    backends: {{catalog: 100, monolith: 0}}
"""


@pytest.mark.slow
@pytest.mark.parametrize("target", ["nginx", "haproxy"])
def test_the_access_log_counts_every_request_by_route_and_backend(tmp_path: Path, target: str) -> None:
    needs(target)
    with named_upstreams(("monolith", "catalog", "broken"), failing=("broken",)) as ports:
        routes = tmp_path / "routes.yaml"
        routes.write_text(routes_yaml(ports))
        plan = model.load_plan(routes)
        with run.start(target, plan, port=free_port()) as server:
            sent = [(f"/x/{i}", {"X-User": u}) for i, u in enumerate(USERS)] + [("/api/p", {})] * 9
            statuses = [status for status, _, _ in answers(server.port, sent)]
            log = numbers.AccessLog(server.access_log, tuple(r.name for r in plan.rules))
            for _ in range(400):  # the server writes each line after its answer
                counts = log.counts()
                # HAProxy drops a log line now and then on a loaded machine, and counts it itself
                dropped = _dropped(server) if target == "haproxy" else 0
                if sum(c.requests for c in counts.values()) + dropped >= len(sent):
                    break
                threading.Event().wait(0.05)
    want = Counter(balance.choose([("monolith", 50), ("broken", 50)], salt="shop", key=u) for u in USERS)
    expected = {("shop", "monolith"): want["monolith"], ("shop", "broken"): want["broken"], ("api", "catalog"): 9}
    got = {k: v.requests for k, v in counts.items()}
    assert set(got) == set(expected) and all(got[k] <= expected[k] for k in expected), got
    assert sum(got.values()) + dropped == len(sent), (got, dropped)  # every request counted, or said dropped
    assert counts["shop", "broken"].errors == got["shop", "broken"]
    assert sum(s >= 500 for s in statuses) == want["broken"]
    assert counts["shop", "monolith"].errors == 0 and counts["api", "catalog"].errors == 0
    histogram = counts["shop", "monolith"].cumulative()
    assert histogram[-1] == (float("inf"), got["shop", "monolith"])  # every request in one bucket
    assert log.unreadable == 0


@pytest.mark.slow
@pytest.mark.parametrize("target", ["nginx", "haproxy"])
def test_a_canary_on_the_plane_s_own_numbers_promotes_a_healthy_candidate_and_rolls_back_a_failing_one(
        tmp_path: Path, target: str) -> None:
    needs(target)
    gate = Gate(max_error_rate=0.05, min_requests=20, p99_floor_ms=1000)
    with named_upstreams(("monolith", "catalog", "broken"), failing=("broken",)) as ports:
        for candidate, outcome in (("catalog", "promoted"), ("broken", "rolled_back")):
            folder = tmp_path / candidate
            folder.mkdir()
            routes = folder / "routes.yaml"
            routes.write_text(routes_yaml(ports, candidate=candidate).replace(
                f"monolith: 50, {candidate}: 50", f"monolith: 100, {candidate}: 0"))
            with followed(target, routes, folder=folder / "plane", traffic=True) as (server, _):
                control = PlaneControl(routes, server.folder, ledger=folder / "ledger.jsonl")
                result = run_canary(control, CanaryPlan(route="shop", candidate=candidate, steps=(20, 100),
                                                        interval=0.6, gate=gate, max_wait=20, poll=0.1),
                                    say=lambda line: None)
            assert result.outcome == outcome, (candidate, result.why)
            final = {"promoted": {"monolith": 0, candidate: 100}, "rolled_back": {"monolith": 100, candidate: 0}}
            shop = next(r for r in model.load_plan(routes).rules if r.name == "shop")
            assert dict(shop.backends) == final[outcome]
            assert (folder / "plane" / follow.APPLIED).read_text().count(model.load_plan(routes).sha256) == 1
            moves = [e["new"] for e in ledger.tail(folder / "ledger.jsonl", 50) if e["new"] != e.get("old")]
            assert moves[0] == {"monolith": 80, candidate: 20} and moves[-1] == final[outcome]



def _dropped(server: run.Running) -> int:
    info = follow.runtime_api(server, "show info")
    return next(int(line.split(":")[1]) for line in info.splitlines() if line.startswith("DroppedLogs:"))
