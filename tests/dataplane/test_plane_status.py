"""`strangler status` with nginx/HAProxy in front (what `strangler up --data-plane` leaves in
stack.json): the routes file's weights, each backend's requests from the plane's own access
log, what the plane serves, and a file it refused — not "no router is running"."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from control.shift import shift_file
from tests.dataplane.wire import backends_seen, canary_routes, followed, named_upstreams, needs

pytestmark = pytest.mark.slow


def status(state: Path) -> dict:  # type: ignore[type-arg]
    r = CliRunner().invoke(app, ["status", "--json"], env={"STRANGLER_STATE_DIR": str(state),
                                                           "STRANGLER_ROUTER_URL": None, "COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    return dict(json.loads(r.stdout))


def wait_for(check, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + 30
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


@pytest.mark.parametrize("target", ["nginx", "haproxy"])
def test_status_reads_the_plane_s_numbers_weights_and_what_it_serves(tmp_path: Path, target: str) -> None:
    needs(target)
    state = tmp_path / ".strangler"
    with named_upstreams(("monolith", "catalog")) as ports:
        routes = tmp_path / "routes.yaml"
        routes.write_text(canary_routes(ports, "shop"))
        shift_file(routes, route="shop", backend="catalog", weight=30, reason="test")
        with followed(target, routes, folder=state / "dataplane" / target) as (server, _):
            (state / "run").mkdir(parents=True)
            (state / "run" / "stack.json").write_text(json.dumps({
                "router_url": None, "routes": str(routes),
                "processes": [{"name": target, "role": "dataplane", "port": server.port}]}))
            sent = Counter(backends_seen(server.port, [(f"/x/{i}", {"X-User": f"user-{i}"}) for i in range(200)]))
            assert sent["catalog"] and sent["monolith"]
            wait_for(lambda: sum(r["requests"] for r in status(state)["routes"]) == 200, "the log's 200 requests")
            doc = status(state)
            (shop,) = doc["routes"]
            assert shop["weights"] == {"monolith": 70, "catalog": 30}
            assert {b: row["requests"] for b, row in shop["backends"].items()} == dict(sent)
            assert doc["plane"]["name"] == target and doc["plane"]["current"] and not doc["plane"]["refused"]
            # a file the plane refuses: it keeps serving the old one, and status says so
            routes.write_text(routes.read_text().replace("backends: {", "backends: {nowhere: 5, "))
            wait_for(lambda: status(state)["plane"]["refused"], "the refusal in applied.json")
            plane = status(state)["plane"]
            assert not plane["current"] and "nowhere" in plane["refused"]
