"""`strangler own`: the gated, resumable ownership flip on the embedded SQLite stack, with real
`strangler cdc run` processes for both streams and `strangler own` run as a process (so a
crash between phases is a real os._exit at a fault point, cdc/faults.py)."""

from __future__ import annotations

import json
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

import ownership
from cdc import faults
from cdc.guard import guard_state
from tests.cli.ownenv import Shop, run_sql

pytestmark = pytest.mark.slow


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[Shop]:
    s = Shop(tmp_path)
    s.create()
    try:
        yield s
    finally:
        s.stop_all()


@pytest.fixture
def running(shop: Shop) -> Shop:
    shop.start("catalog")
    shop.start("catalog_reverse")
    shop.wait_streaming("catalog", "catalog_reverse")
    return shop


def owner(shop: Shop) -> ownership.Group:
    return ownership.load(shop.ownership).group("catalog")


def phases(shop: Shop) -> list[str]:
    lines = shop.ledger.read_text().splitlines() if shop.ledger.exists() else []
    return [e["phase"] for e in map(json.loads, lines) if e.get("kind") == "ownership"]


def app_write(db: Path, stmt: str) -> str | None:
    try:
        run_sql(db, stmt)
    except sqlite3.Error as exc:
        return str(exc)
    return None


def test_flip_moves_ownership_guards_the_old_side_and_ledgers_every_phase(running: Shop) -> None:
    shop = running
    run_sql(shop.monolith, "UPDATE catalog_product SET price = 950 WHERE id = 1")  # in flight
    r = shop.own("catalog_product", "--by", "catalog", "--reason", "step 4", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["outcome"] == "done" and doc["from"] == "monolith" and doc["to"] == "catalog"
    assert doc["hold_s"] is not None and doc["hold_s"] >= 0
    g = owner(shop)
    assert g.owner == "catalog" and g.hold is None
    assert phases(shop) == ["preflight", "hold", "drain", "guard", "ids", "reverse", "flip", "done"]
    # drained: the change made before the hold is in the catalog
    assert run_sql(shop.catalog, "SELECT price FROM products WHERE id = 1") == [(950,)]
    # the old owner's database refuses application writes, but not the kept column
    assert "is written by catalog now" in (app_write(shop.monolith, "UPDATE catalog_product SET name = 'x'") or "")
    assert app_write(shop.monolith, "UPDATE catalog_product SET stock_count = 4 WHERE id = 1") is None
    assert app_write(shop.catalog, "UPDATE products SET name = 'claw hammer' WHERE id = 1") is None
    # twice: nothing to do; `strangler ledger` shows the phases
    again = shop.own("catalog", "--by", "catalog", "--reason", "again")
    assert again.returncode == 0 and "nothing to do" in again.stdout
    from typer.testing import CliRunner

    from cli.main import app

    shown = CliRunner().invoke(app, ["ledger", "--routes", str(shop.root / "routes.yaml")],
                               env={"COLUMNS": "250"})
    assert "own flip: monolith → catalog" in shown.output and "group catalog" in shown.output


def test_bad_input_is_refused_with_what_to_do_and_nothing_changes(shop: Shop) -> None:
    before = shop.fingerprint()
    cases = [
        (["orders_order", "--by", "catalog", "--reason", "r"], 2, "a table with no stream cannot change owner"),
        (["catalog", "--by", "payments", "--reason", "r"], 2, "has no side 'payments'; its sides: monolith, catalog"),
        (["catalog", "--by", "catalog", "--reason", "r"], 3, "stream catalog is not running; start it: `strangler cdc run catalog`"),
    ]
    for args, code, words in cases:
        r = shop.own(*args)
        assert r.returncode == code, (args, r.stdout, r.stderr)
        assert words in " ".join(r.stderr.split()), (args, r.stderr)
        assert shop.fingerprint() == before, args


def plane_routes(ports: dict[str, int]) -> str:
    from tests.dataplane.wire import owned_routes

    return owned_routes(ports, group="catalog", ledger=".strangler/ledger.jsonl")


@pytest.mark.parametrize("target", ["nginx", "haproxy"])
def test_a_flip_through_a_data_plane_holds_its_writes_then_moves_them(running: Shop, target: str) -> None:
    """`strangler own` with nginx/HAProxy in front (what `strangler up --data-plane` leaves in
    stack.json): paused right after the hold phase, the plane already answers the group's writes
    503 writes_held and its reads from the owner; right after the flip, writes reach the new
    owner. The plane follows its files only every 0.5 s, so neither holds unless `own` waits
    for the plane's confirmation (handover/front.py)."""
    from dataplane import follow, model, run
    from devstack import free_port
    from tests.dataplane.wire import answers, backends_seen, named_upstreams, needs

    needs(target)
    shop = running
    write = [("/api/products/1", {"X-User": "u1"}, "PATCH")]
    read = [("/api/products/1", {"X-User": "u1"})]
    with named_upstreams(("monolith", "catalog")) as ports:
        routes = shop.root / "routes.yaml"
        routes.write_text(plane_routes(ports))
        plan = model.load_plan(routes)
        with run.start(target, plan, port=free_port(), folder=shop.state / "dataplane" / target) as server:
            stop = threading.Event()
            follower = threading.Thread(target=follow.Follower(server, routes, plan).follow, args=(stop,),
                                        kwargs={"interval": 0.5})
            follower.start()
            (shop.state / "run").mkdir(parents=True, exist_ok=True)
            (shop.state / "run" / "stack.json").write_text(json.dumps({
                "router_url": None, "routes": str(routes),
                "processes": [{"name": target, "role": "dataplane", "port": server.port}]}))
            try:
                assert backends_seen(server.port, write) == ["monolith"]
                proc = shop.own("catalog", "--by", "catalog", "--reason", "step 4", "--json", wait=False,
                                env=shop.env(STRANGLER_CDC_FAULTS="own.after_hold=pause",
                                             STRANGLER_CDC_FAULTS_DIR=str(shop.faults)))
                try:
                    while proc.poll() is None and not (shop.faults / "own.after_hold.hit").exists():
                        time.sleep(0.01)
                    assert proc.poll() is None, proc.communicate()
                    status, headers, body = answers(server.port, write)[0]
                    assert status == 503 and b'"error": "writes_held"' in body, (status, body)
                    assert float(headers[b"retry-after"]) > 0
                    assert backends_seen(server.port, read) == ["monolith"]
                    faults.release(shop.faults, "own.after_hold")
                    out, err = proc.communicate(timeout=120)
                finally:
                    if proc.poll() is None:
                        proc.kill()
                        proc.wait()
                assert proc.returncode == 0, err
                assert json.loads(out)["outcome"] == "done"
                assert backends_seen(server.port, write) == ["catalog"]  # at once: `done` waited for it
                assert backends_seen(server.port, read) == ["monolith"]  # reads move by weight, not by owner
            finally:
                stop.set()
                follower.join(40)
    held = [e for e in map(json.loads, shop.ledger.read_text().splitlines()) if e.get("phase") in ("hold", "done")]
    assert [e["front"] for e in held] == [target, target]
    assert owner(shop).owner == "catalog"


def test_a_plane_that_cannot_sign_the_new_owner_s_identity_is_refused_and_nothing_changes(running: Shop) -> None:
    """Through nginx/HAProxy the catalog would see no user behind an `identity: true` route (only
    the router signs X-Strangler-Identity): every staff write would get 401 after the flip."""
    shop = running
    routes = shop.root / "routes.yaml"
    routes.write_text(plane_routes({"monolith": 1, "catalog": 2}).replace("    writes: catalog\n",
                                                                          "    writes: catalog\n    identity: true\n"))
    (shop.state / "run").mkdir(parents=True, exist_ok=True)
    listener = socket.create_server(("127.0.0.1", 0))  # the plane's port answers: it runs
    (shop.state / "run" / "stack.json").write_text(json.dumps({
        "router_url": None, "routes": str(routes),
        "processes": [{"name": "nginx", "role": "dataplane", "port": listener.getsockname()[1]}]}))
    before = shop.fingerprint()
    with listener:
        r = shop.own("catalog", "--by", "catalog", "--reason", "r")
    assert r.returncode == 1, (r.stdout, r.stderr)
    said = " ".join(r.stderr.split())
    assert "route(s) products carry catalog's writes with `identity: true`, and nginx cannot sign" in said, said
    assert "Flip with Strangler's router in front" in said
    assert shop.fingerprint() == before
    assert shop.own("catalog", "--by", "monolith", "--reason", "r").returncode == 0  # the monolith knows its users


def test_a_stopped_stream_and_a_missing_token_are_refused_and_nothing_changes(running: Shop) -> None:
    shop = running
    server = FakeRouter(shop.ownership)
    try:
        before = shop.fingerprint()
        r = shop.own("catalog", "--by", "catalog", "--reason", "r", "--router", server.url)
        assert r.returncode == 1, r.stderr
        assert "needs the admin token: set STRANGLER_ADMIN_TOKEN" in " ".join(r.stderr.split())
        assert shop.fingerprint() == before and server.reloads == 0
        run_sql(shop.catalog, "DELETE FROM products WHERE id = 2")  # the copy differs
        r = shop.own("catalog", "--by", "catalog", "--reason", "r")
        assert r.returncode == 3, r.stderr
        assert "repair first: `strangler verify catalog catalog_product --repair`" in " ".join(r.stderr.split())
        assert shop.fingerprint() == before
        shop.stop("catalog_reverse")
        shop.stop("catalog")
        r = shop.own("catalog", "--by", "catalog", "--reason", "r")
        assert r.returncode == 3 and "stream catalog is stopped" in r.stderr, r.stderr
        assert shop.fingerprint() == before
    finally:
        server.close()


def test_two_at_once_exactly_one_proceeds(running: Shop) -> None:
    shop = running
    env = shop.env(STRANGLER_CDC_FAULTS="own.after_hold=pause", STRANGLER_CDC_FAULTS_DIR=str(shop.faults))
    first = shop.own("catalog", "--by", "catalog", "--reason", "first", env=env, wait=False)
    try:
        faults.wait_hit(shop.faults, "own.after_hold", timeout=60)
        second = shop.own("catalog", "--by", "catalog", "--reason", "second")
        assert second.returncode == 1
        assert f"another strangler own catalog is running (pid {first.pid})" in second.stderr
    finally:
        faults.release(shop.faults, "own.after_hold")
    assert first.wait(60) == 0, first.stderr.read() if first.stderr else ""
    assert owner(shop).owner == "catalog"
    entries = [json.loads(x) for x in shop.ledger.read_text().splitlines()]
    assert {e["reason"] for e in entries} == {"first"}  # the second one changed nothing


@pytest.mark.parametrize("phase", ["hold", "guard", "reverse", "flip"])
def test_a_crash_between_phases_resumes_to_a_consistent_end(running: Shop, phase: str) -> None:
    shop = running
    crash = shop.own("catalog", "--by", "catalog", "--reason", "r",
                     env=shop.env(STRANGLER_CDC_FAULTS=f"own.after_{phase}=exit"))
    assert crash.returncode == faults.FAULT_EXIT, crash.stderr
    if phase == "flip":  # ownership moved, the router not yet confirmed: finish, never undo
        assert owner(shop).owner == "catalog" and owner(shop).hold is None
        undo = shop.own("catalog", "--by", "catalog", "--undo")
        assert undo.returncode == 1 and "already happened" in undo.stderr
    else:
        assert owner(shop).owner == "monolith" and owner(shop).hold is not None  # held, not flipped
    # a flip the other way is refused while this one is unfinished
    other = shop.own("catalog", "--by", "monolith", "--reason", "r")
    assert other.returncode == 1 and "is unfinished" in other.stderr
    resumed = shop.own("catalog", "--by", "catalog", "--reason", "r", "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["resumed"] is True
    g = owner(shop)
    assert g.owner == "catalog" and g.hold is None
    assert guard_state(f"sqlite:///{shop.monolith}", g, "monolith")["catalog_product"] == "guarded (keeps stock_count)"
    assert set(guard_state(f"sqlite:///{shop.catalog}", g, "catalog").values()) == {"open"}
    assert not (shop.state / "own" / "catalog.json").exists()


def test_undo_after_a_crash_returns_to_the_old_owner(running: Shop) -> None:
    shop = running
    before = shop.fingerprint()
    crash = shop.own("catalog", "--by", "catalog", "--reason", "r",
                     env=shop.env(STRANGLER_CDC_FAULTS="own.after_guard=exit"))
    assert crash.returncode == faults.FAULT_EXIT
    assert "is written by catalog now" in (app_write(shop.monolith, "DELETE FROM catalog_product") or "")
    undo = shop.own("catalog", "--by", "catalog", "--undo")
    assert undo.returncode == 0, undo.stderr
    after = shop.fingerprint()
    assert after["ownership"] == before["ownership"]  # same bytes: owner monolith, no hold
    assert after["guards"] == before["guards"]
    assert app_write(shop.monolith, "UPDATE catalog_product SET name = 'mallet' WHERE id = 1") is None
    assert phases(shop)[-1] == "undone"


def test_a_failing_phase_undoes_what_was_done(running: Shop) -> None:
    shop = running
    before = shop.fingerprint()
    shop.stop("catalog_reverse")  # the new owner's writes would not flow back
    r = shop.own("catalog", "--by", "catalog", "--reason", "r")
    assert r.returncode == 1
    assert "failed and was undone" in r.stderr and "strangler cdc run catalog_reverse" in r.stderr
    after = shop.fingerprint()
    assert after["ownership"] == before["ownership"] and after["guards"] == before["guards"]
    assert phases(shop) == ["preflight", "hold", "drain", "guard", "ids", "undone"]


def test_hold_reloads_the_router_and_waits_for_every_worker(running: Shop) -> None:
    shop = running
    server = FakeRouter(shop.ownership)
    try:
        r = shop.own("catalog", "--by", "catalog", "--reason", "r", "--router", server.url,
                     env=shop.env(STRANGLER_ADMIN_TOKEN="t0ken"))
        assert r.returncode == 0, r.stderr
        # hold (new file, writes drained), flip and done: every worker confirmed each sha
        assert server.reloads >= 2 and server.auth == {"Bearer t0ken"}
        assert server.held_seen and not owner(shop).held()
        # the first status after the hold's reload showed a write in flight: `own` waited
        assert server.clean_while_held
    finally:
        server.close()


def test_drain_waits_until_the_forward_stream_applied_everything(running: Shop, monkeypatch: Any) -> None:
    """A stream that is up but not applying (SIGSTOPped) cannot be drained within the hold; once
    it runs again the drain passes and the change is in the target."""
    import os
    import signal
    import time

    from cdc import config
    from handover.errors import PhaseFailed
    from handover.flip import Flip
    from handover.phases import phase_drain

    shop = running
    monkeypatch.setenv("STRANGLER_STATE_DIR", str(shop.state))
    f = Flip(group="catalog", to="catalog", reason="r", own_path=shop.ownership,
             streams=config.load(shop.streams), ledger=shop.ledger, front=None, max_lag=5,
             hold_max=1.0, say=lambda line: None,
             st={"from": "monolith", "to": "catalog", "phases": [], "hold_until": time.time() + 1.0})
    pid = shop.procs["catalog"].pid
    os.kill(pid, signal.SIGSTOP)
    try:
        run_sql(shop.monolith, "UPDATE catalog_product SET price = 777 WHERE id = 2")
        with pytest.raises(PhaseFailed, match="hold budget of 1 s ran out"):
            phase_drain(f)
    finally:
        os.kill(pid, signal.SIGCONT)
    f.st["hold_until"] = time.time() + 30
    phase_drain(f)
    assert run_sql(shop.catalog, "SELECT price FROM products WHERE id = 2") == [(777,)]


class FakeRouter:
    """Two router workers that serve ownership.yaml's sha after a reload (the status shape of
    the router's issue-11 contract). The first status after a reload still shows one write
    in flight: `own` must wait for it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.reloads = 0
        self.auth: set[str] = set()
        self.held_seen = False
        self.clean_while_held = False
        self.sha = ownership.load(path).sha256
        self.inflight = 0
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, doc: dict[str, Any]) -> None:
                body = json.dumps(doc).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:  # noqa: N802
                fake.auth.add(self.headers.get("Authorization", ""))
                fake.reloads += 1
                o = ownership.load(fake.path)
                fake.sha, fake.inflight = o.sha256, 1
                fake.held_seen |= o.group("catalog").held()
                self._send({"reloaded": True})

            def do_GET(self) -> None:  # noqa: N802
                inflight, fake.inflight = fake.inflight, 0
                if inflight == 0 and ownership.load(fake.path).group("catalog").held():
                    fake.clean_while_held = True
                workers = [{"pid": p, "sha256": fake.sha, "inflight_writes": {"catalog": inflight}}
                           for p in (101, 102)]
                self._send({"routes": [], "ownership": {"sha256": fake.sha, "workers": workers}})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_owning_what_one_already_owns_makes_the_databases_enforce_it(shop: Shop) -> None:
    """A fresh stack: the file says the monolith owns, so the catalog's copy must refuse writes."""
    insert = "INSERT INTO products (id, name, price) VALUES ({}, 'x', 1)"
    assert app_write(shop.catalog, insert.format(90)) is None  # not guarded yet
    r = shop.own("catalog", "--by", "monolith", "--reason", "enforce", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["outcome"] == "nothing to do" and set(doc["guards"]["catalog"].values()) == {"installed"}
    assert "is written by monolith now" in (app_write(shop.catalog, insert.format(91)) or "")
    assert app_write(shop.monolith, "INSERT INTO catalog_product (id, name, price) VALUES (91, 'y', 1)") is None
    again = json.loads(shop.own("catalog", "--by", "monolith", "--reason", "enforce", "--json").stdout)
    assert set(again["guards"]["catalog"].values()) == {"unchanged"}
