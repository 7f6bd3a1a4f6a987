"""dataplane/follow.py on real servers: `strangler shift`'s edits of routes.yaml reach a running
nginx (reload) and HAProxy (runtime API, no reload) under wrk load without one failed request,
every user lands where the router would put them after each change, and a file the router
refuses leaves the plane as it was."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from control.shift import shift_file
from dataplane import follow, model, run
from devstack import free_port
from router import balance, ledger
from tests.dataplane.wire import (
    ROOT,
    WRK_USERS_LUA,
    answers,
    backends_seen,
    canary_routes,
    followed,
    named_upstreams,
    needs,
    owned_routes,
)

USERS = [f"user-{i}" for i in range(300)]
STEPS = (10, 25, 50, 75, 90, 100, 60, 20, 0)  # catalog's weight, a canary up and back down


def wait_applied(applied: list[follow.Applied], routes: Path) -> follow.Applied:
    want = model.load_plan(routes).sha256
    for _ in range(2000):
        done = next((a for a in applied if a.sha256 == want), None)
        if done is not None:
            return done
        time.sleep(0.02)
    raise AssertionError(f"the follower never applied {want[:16]}: {applied[-3:]}")


@pytest.mark.slow
@pytest.mark.parametrize("target", ["nginx", "haproxy"])
def test_shifts_reach_the_running_plane_under_wrk_load_without_a_failed_request(tmp_path: Path, target: str) -> None:
    needs(target, "wrk")
    (tmp_path / "users.lua").write_text(WRK_USERS_LUA)
    with named_upstreams(("monolith", "catalog")) as ports:
        routes = tmp_path / "routes.yaml"
        routes.write_text(canary_routes(ports))
        with followed(target, routes) as (server, applied):
            workers = follow.workers(server)
            # nginx's reload closes idle keep-alive connections (a request sent on one at that
            # instant is lost to a client that does not retry, as wrk does not: README, "Steer
            # them live"), so its load comes on fresh connections; HAProxy's is keep-alive.
            load = subprocess.Popen(["wrk", "-t1", "-c8", "-d5s", "-s", str(tmp_path / "users.lua"),
                                     f"{server.url}/x"], stdout=subprocess.PIPE, text=True,
                                    env={**os.environ, "CLOSE": "1" if target == "nginx" else "0"})
            for weight in STEPS:
                shift_file(routes, route="root", backend="catalog", weight=weight, reason=f"canary step {weight}")
                how = wait_applied(applied, routes).how
                assert how == ("runtime API" if target == "haproxy" else "reload"), applied[-1]
                seen = backends_seen(server.port, [("/x", {"X-User": u}) for u in USERS])
                want = [balance.choose([("monolith", 100 - weight), ("catalog", weight)], salt="root", key=u)
                        for u in USERS]
                assert seen == want, f"{target} at catalog {weight} %: users elsewhere than the router"
            assert load.poll() is None, "wrk ended before the last change: every change must be under load"
            output, _ = load.communicate(timeout=60)
            if target == "haproxy":
                assert follow.workers(server) == workers  # the weights changed without a reload
    requests = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    assert requests > 1000, output
    assert "Socket errors" not in output and "Non-2xx" not in output, output
    entries = ledger.tail(tmp_path / "ledger.jsonl", 100)
    assert [e["new"]["catalog"] for e in entries] == list(STEPS)  # the one ledger shift writes


@pytest.mark.slow
@pytest.mark.parametrize("target", ["nginx", "haproxy"])
def test_a_file_the_router_refuses_leaves_the_plane_as_it_was(tmp_path: Path, target: str) -> None:
    needs(target)
    with named_upstreams(("monolith", "catalog")) as ports:
        routes = tmp_path / "routes.yaml"
        routes.write_text(canary_routes(ports).replace("monolith: 100, catalog: 0", "monolith: 50, catalog: 50"))
        plan = model.load_plan(routes)
        with run.start(target, plan, port=free_port()) as server:
            follower = follow.Follower(server, routes, plan)
            before = backends_seen(server.port, [("/x", {"X-User": u}) for u in USERS])
            routes.write_text(routes.read_text().replace("catalog: 50}", "catalog: 55}"))
            refused = follower.sync()
            assert refused is not None and refused.how == "refused"
            assert "weights sum to 105, not 100 — fix" in str(refused.error)
            assert f"the {target} keeps serving the last good file" in str(refused.error)
            assert follower.sync() is None  # said once, not on every poll
            assert backends_seen(server.port, [("/x", {"X-User": u}) for u in USERS]) == before
            # a change of more than weights: HAProxy reloads too, and the new route answers
            routes.write_text(routes.read_text().replace("catalog: 55}", "catalog: 50}").replace(
                "routes:\n", "routes:\n  - name: only\n    match: {prefix: /only}\n    backends: {catalog: 100}\n"))
            assert follower.sync() == follow.Applied(sha256=model.load_plan(routes).sha256, how="reload")
            assert backends_seen(server.port, [("/only", {})]) == ["catalog"]
            assert backends_seen(server.port, [("/x", {"X-User": u}) for u in USERS]) == before


@pytest.mark.slow
def test_python_m_dataplane_follows_shift_and_takes_its_server_with_it(tmp_path: Path) -> None:
    """What `strangler up --data-plane haproxy` runs: a shift of the file is applied and said
    in its log; killed (even with SIGKILL), it leaves no HAProxy behind."""
    needs("haproxy")
    with named_upstreams(("monolith", "catalog")) as ports:
        routes = tmp_path / "routes.yaml"
        routes.write_text(canary_routes(ports))
        port = free_port()
        log = tmp_path / "plane.log"
        with open(log, "wb") as out:
            runner = subprocess.Popen([sys.executable, "-m", "dataplane", "haproxy", "--routes", str(routes),
                                       "--port", str(port)], cwd=ROOT, stderr=out)
        try:
            for _ in range(300):
                if "following the file" in log.read_text():
                    break
                assert runner.poll() is None, log.read_text()
                threading.Event().wait(0.05)
            server = follow.workers(run.Running(target="haproxy", port=port, folder=tmp_path, process=runner))
            assert len(server) == 1  # the HAProxy master, its child
            shift_file(routes, route="root", backend="catalog", weight=40, reason="canary step")
            want = [balance.choose([("monolith", 60), ("catalog", 40)], salt="root", key=u) for u in USERS]
            for _ in range(200):
                if "by runtime API" in log.read_text():
                    break
                threading.Event().wait(0.05)
            assert f"applied sha256 {model.load_plan(routes).sha256[:16]} by runtime API" in log.read_text()
            assert backends_seen(port, [("/x", {"X-User": u}) for u in USERS]) == want
        finally:
            runner.kill()
            runner.wait(10)
        (master,) = server
        for _ in range(200):  # it dies with its parent (PR_SET_PDEATHSIG)
            if not Path(f"/proc/{master}").exists() or "Z" in Path(f"/proc/{master}/stat").read_text().split()[2]:
                break
            threading.Event().wait(0.05)
        else:
            raise AssertionError(f"HAProxy (pid {master}) outlived its killed python -m dataplane")


OWNERSHIP = """version: 1
groups:
  products:
    owner: {owner}
    sides:
      monolith: {{stream: fwd, tables: [a]}}
      catalog: {{stream: rev, tables: [b]}}
"""


@contextmanager
def owned_plane(tmp_path: Path, target: str) -> Iterator[tuple[run.Running, follow.Follower, Path]]:
    """`target` on owned_routes with ownership.yaml naming the monolith, and its Follower (synced
    by the test, not polled); the ownership file, for the test to change as `own` does."""
    needs(target)
    with named_upstreams(("monolith", "catalog")) as ports:
        routes = tmp_path / "routes.yaml"
        routes.write_text(owned_routes(ports))
        own = tmp_path / "ownership.yaml"
        own.write_text(OWNERSHIP.format(owner="monolith"))
        plan = model.load_plan(routes)
        with run.start(target, plan, port=free_port()) as server:
            yield server, follow.Follower(server, routes, plan), own


@pytest.mark.slow
@pytest.mark.parametrize("target", ["nginx", "haproxy"])
def test_an_ownership_flip_moves_the_plane_s_writes_though_routes_yaml_is_unchanged(tmp_path: Path, target: str) -> None:
    with owned_plane(tmp_path, target) as (server, follower, own):
        write = [("/api/products/1", {"X-User": "u1"}, "POST")]
        assert backends_seen(server.port, write) == ["monolith"]
        own.write_text(OWNERSHIP.format(owner="catalog"))  # what `own` flips
        applied = follower.sync()
        assert applied is not None and applied.how in ("reload", "runtime API"), applied
        assert backends_seen(server.port, write) == ["catalog"]
        assert backends_seen(server.port, [("/api/products/1", {"X-User": "u1"})]) == ["monolith"]  # reads stay


@pytest.mark.slow
@pytest.mark.parametrize("target", ["nginx", "haproxy"])
def test_a_hold_answers_writes_503_as_the_router_does_and_lapses(tmp_path: Path, target: str) -> None:
    import time as clock

    import ownership

    with owned_plane(tmp_path, target) as (server, follower, own):
        now = clock.time()
        own.write_text(ownership.dump(ownership.with_hold(ownership.load(own), "products", ownership.Hold(
            since=now, until=now + 3, reason="strangler own"))))  # what `own`'s hold phase writes
        assert follower.sync() is not None
        status, headers, body = answers(server.port, [("/api/products/1", {"X-User": "u"}, "POST")])[0]
        assert status == 503 and b'"error": "writes_held"' in body and headers[b"retry-after"] in b"12345"
        assert backends_seen(server.port, [("/api/products/1", {"X-User": "u"})]) == ["monolith"]  # reads pass
        while clock.time() < now + 3.1:  # the hold lapses: writes flow again, as with the router
            clock.sleep(0.1)
        assert follower.sync() is not None
        assert backends_seen(server.port, [("/api/products/1", {"X-User": "u"}, "POST")]) == ["monolith"]
