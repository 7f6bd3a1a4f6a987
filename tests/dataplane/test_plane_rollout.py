"""`strangler rollout` on a data plane: the rollout controller drives a real nginx and HAProxy
through control.planecontrol — a header route for testers, weights, an analysis on the plane's
own numbers, and at the end the header route removed — and HAProxy refuses a mirror step
instead of dropping it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from control.planecontrol import PlaneControl
from dataplane import model
from rollout.controller import Controller, RolloutError, Store, new_rollout
from rollout.spec import from_yaml_doc
from tests.dataplane.wire import backends_seen, canary_routes, followed, named_upstreams, needs

SPEC = """
route: shop
to: catalog
gate: {min_requests: 20, p99_floor: 1s}
steps:
  - setHeaderRoute: {name: testers, match: [{headerName: X-Canary, headerValue: {exact: "yes"}}]}
  - setWeight: 30
  - analysis: {interval: 0.5s, checks: 1}
  - setWeight: 100
  - analysis: {interval: 0.5s, checks: 1}
"""


@pytest.mark.slow
@pytest.mark.parametrize("target", ["nginx", "haproxy"])
def test_a_rollout_steers_the_plane_header_route_weights_and_analysis(tmp_path: Path, target: str) -> None:
    needs(target)
    with named_upstreams(("monolith", "catalog")) as ports:
        routes = tmp_path / "routes.yaml"
        routes.write_text(canary_routes(ports, "shop"))
        with followed(target, routes, folder=tmp_path / "plane", traffic=True) as (server, _):
            control = PlaneControl(routes, server.folder, ledger=tmp_path / "ledger.jsonl",
                                   role="rollout controller", target=target)
            control.set_header_route("shop", {"name": "testers", "header": "X-Canary", "exact": "yes",
                                              "to": "catalog"}, "testers first")
            # the plane serves it: testers reach the candidate, everyone else the monolith
            assert backends_seen(server.port, [("/p", {"X-Canary": "yes", "X-User": "u1"})]) == ["catalog"]
            assert backends_seen(server.port, [("/p", {"X-User": "u1"})]) == ["monolith"]
            store = Store(tmp_path / "rollouts", "shop", ledger=tmp_path / "ledger.jsonl")
            store.save(new_rollout(from_yaml_doc(yaml.safe_load(SPEC)), actor="tester", now=0.0))
            doc = Controller(store, control, actor="tester (controller)", say=lambda line: None).run(poll=0.05)
        shop = next(r for r in model.load_plan(routes).rules if r.name == "shop")
    assert doc["state"] == "promoted", doc.get("why")
    assert dict(shop.backends) == {"monolith": 0, "catalog": 100}
    assert shop.header_routes == ()  # the rollout's header route is removed at the end, as Argo does


@pytest.mark.slow
def test_haproxy_refuses_a_mirror_step_instead_of_dropping_it(tmp_path: Path) -> None:
    routes = tmp_path / "routes.yaml"
    routes.write_text(canary_routes({"monolith": 1, "catalog": 2}, "shop"))
    control = PlaneControl(routes, tmp_path, ledger=None, target="haproxy")
    with pytest.raises(RolloutError, match="HAProxy cannot mirror requests"):
        control.set_mirror("shop", {"to": "catalog", "percent": 10}, "compare")
    assert "shadow" not in routes.read_text()  # nothing written

