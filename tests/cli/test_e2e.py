"""`strangler up / shift / canary / status / down` against the real processes on loopback.

Each test runs the real command (a child `python -m cli.main ...`) in a throwaway folder
with its own state folder and free ports, drives traffic through the router, and checks
what a user would see; afterwards nothing it started may still run or hold a port.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from cli.main import app
from devstack import free_port
from stack.model import part_present
from stack.supervisor import pid_alive
from walkthrough.flow import demo_routes, write_yaml

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


@dataclass
class Workspace:
    root: Path
    router_port: int
    env: dict[str, str]
    pids: list[int] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.router_port}"

    def run(self, *args: str, check: int | None = 0) -> Result:
        """`strangler ARGS` in this process (Typer's runner: no interpreter start per call),
        from the workspace folder with its environment; the stack's processes are real."""
        here = os.getcwd()
        os.chdir(self.root)
        try:
            r = CliRunner().invoke(app, list(args), env=self.overrides)
        finally:
            os.chdir(here)
        proc = Result(r.exit_code, r.stdout, r.stderr)
        if check is not None:
            assert proc.returncode == check, f"`strangler {' '.join(args)}` exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
        return proc

    @property
    def overrides(self) -> dict[str, str | None]:
        keep = ("STRANGLER_STATE_DIR", "COLUMNS")
        return {**{k: self.env[k] for k in keep},
                **{k: None for k in ("STRANGLER_ADMIN_TOKEN", "STRANGLER_ROUTER_URL", "STRANGLER_IDENTITY_SECRET")}}

    def up(self, *extra: str) -> None:
        self.run("up", "--detach", "--no-cdc", "--port", str(self.router_port), *extra)
        ps = json.loads(self.run("ps", "--json").stdout)
        self.pids.extend(p["pid"] for p in ps)
        assert {p["name"] for p in ps} == {"monolith", "catalog", "router"}
        assert all(p["alive"] for p in ps)

    def ports(self) -> list[int]:
        return [self.router_port, self.monolith_port, self.catalog_port]

    monolith_port: int = 0
    catalog_port: int = 0


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.fixture
def ws(tmp_path: Path) -> Iterator[Workspace]:
    mono, cat = free_port(), free_port()
    write_yaml(tmp_path / "routes.yaml", demo_routes(monolith_url=f"http://127.0.0.1:{mono}",
                                                     catalog_url=f"http://127.0.0.1:{cat}"))
    shutil.copyfile(REPO / "ownership.yaml", tmp_path / "ownership.yaml")  # the routes name it
    env = {**os.environ, "STRANGLER_STATE_DIR": str(tmp_path / ".strangler"),
           "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    for var in ("STRANGLER_ADMIN_TOKEN", "STRANGLER_ROUTER_URL", "STRANGLER_IDENTITY_SECRET"):
        env.pop(var, None)
    w = Workspace(root=tmp_path, router_port=free_port(), env=env)
    w.monolith_port, w.catalog_port = mono, cat
    try:
        yield w
    finally:
        w.run("down", check=None)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(pid_alive(p) for p in w.pids):
            time.sleep(0.1)
        left = [p for p in w.pids if pid_alive(p)]
        for pid in left:  # never leak, even when the assertion below fails
            os.kill(pid, signal.SIGKILL)
        assert not left, f"processes left running after `strangler down`: {left}"
        assert all(port_free(p) for p in w.ports()), "a port of the stack is still held"


class Traffic:
    """Product reads through the router from many users (distinct session cookies)."""

    def __init__(self, url: str, rate: float = 80.0) -> None:
        self.url, self.rate = url, rate
        self.sent = self.failed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        rng = random.Random(7)
        with httpx.Client(base_url=self.url, timeout=10) as client:
            while not self._stop.is_set():
                user = f"user{rng.randrange(100_000)}"
                try:
                    r = client.get("/api/products/", headers={"cookie": f"sessionid={user}"})
                    self.failed += r.status_code >= 500
                except httpx.HTTPError:
                    self.failed += 1
                self.sent += 1
                self._stop.wait(1 / self.rate)


STATE_PATIENCE = 300.0  # seconds: far beyond a slow machine's worst, only so a broken run ends


def wait_for_state(reached: Callable[[], bool], what: str, proc: subprocess.Popen[str]) -> None:
    """Return once `reached()`; fail naming `what` (and the process's output) if the process
    exits first or the state never comes. Waits for the state, never for a fixed time."""
    end = time.monotonic() + STATE_PATIENCE
    while not reached():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"never came: {what}; the process exited with {proc.returncode} first:\n{out}\n{err}")
        if time.monotonic() > end:
            proc.kill()
            out, err = proc.communicate()
            pytest.fail(f"never came in {STATE_PATIENCE:.0f}s: {what}; its output so far:\n{out}\n{err}")
        time.sleep(0.2)


def live_weights(ws: Workspace, route: str) -> dict[str, int] | None:
    """The weights the running router serves for `route`, as `strangler status` reads them."""
    status = ws.run("status", "--json", check=None)
    if status.returncode != 0:
        return None
    for r in json.loads(status.stdout)["routes"]:
        if r["route"] == route:
            return dict(r["weights"])
    return None


def test_up_shift_status_routes_ledger_down(ws: Workspace) -> None:
    ws.up()
    again = ws.run("up", "--detach", "--no-cdc", "--port", str(ws.router_port), check=1)
    assert "still running" in again.stderr and "strangler down" in again.stderr

    r = httpx.get(ws.url + "/api/products/", headers={"cookie": "sessionid=someone"})
    assert r.status_code == 200 and r.headers["x-strangler-backend"] == "monolith"

    shifted = ws.run("shift", "products", "--to", "catalog", "--weight", "50", "--reason", "half and half")
    assert "products: monolith=100 catalog=0 → monolith=50 catalog=50" in shifted.stdout
    bad = ws.run("shift", "products", "--to", "catalgo", "--weight", "5", check=1)
    assert "no backend 'catalgo'" in bad.stderr
    assert ws.run("shift", "products", "--to", "catalog", "--weight", "101", check=2).returncode == 2

    with httpx.Client(base_url=ws.url) as client:
        for i in range(200):
            assert client.get("/api/products/", headers={"cookie": f"sessionid=u{i}"}).status_code == 200
    doc = json.loads(ws.run("status", "--json").stdout)
    (products,) = [r for r in doc["routes"] if r["route"] == "products"]
    assert products["weights"] == {"monolith": 50, "catalog": 50}
    shares = {b: s["share"] for b, s in products["backends"].items()}
    assert 0.3 < shares["catalog"] < 0.7 and 0.3 < shares["monolith"] < 0.7
    assert products["backends"]["catalog"]["errors"] == 0

    entries = json.loads(ws.run("ledger", "--route", "products", "--json").stdout)
    assert entries[-1]["reason"] == "half and half" and entries[-1]["new"]["catalog"] == 50
    assert "valid" in ws.run("routes", "validate", "routes.yaml").stdout
    assert "matches the running router" in ws.run("routes", "diff").stdout
    shown = json.loads(ws.run("routes", "show", "--json").stdout)
    (live,) = [r for r in shown["routes"] if r["name"] == "products"]
    assert live["live_weights"] == {"monolith": 50, "catalog": 50} and live["match"]["prefix"] == "/api/products"

    # A broken routes.yaml on disk: the router refuses the reload and serves the last good table
    good = (ws.root / "routes.yaml").read_text()
    (ws.root / "routes.yaml").write_text(good.replace("catalog: 50", "catalog: 57", 1))
    refused = ws.run("shift", "products", "--to", "catalog", "--weight", "60", check=1)
    assert "weights sum to 107, not 100" in refused.stderr  # the admin API's detail, not just its code
    end = time.monotonic() + STATE_PATIENCE
    while "RELOAD REFUSED" not in (status := ws.run("status")).stdout:
        assert time.monotonic() < end, f"status never showed the refused reload:\n{status.stdout}"
        time.sleep(0.3)
    assert "weights sum to 107" in status.stdout and "still serves its previous table" in status.stdout
    shown = ws.run("routes", "show", "--json")
    assert "does not load" in shown.stderr and "weights sum to 107" in shown.stderr
    (live,) = [r for r in json.loads(shown.stdout)["routes"] if r["name"] == "products"]
    assert live["weights"] == live["live_weights"] == {"monolith": 50, "catalog": 50}
    (ws.root / "routes.yaml").write_text(good)

    # Ctrl-C during a canary step leaves the weight where it is, and says so
    canary = subprocess.Popen([sys.executable, "-m", "cli.main", "canary", "products", "--to", "catalog",
                               "--steps", "60,100", "--interval", "60s"], cwd=ws.root, env=ws.env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # Ctrl-C only once the router serves step 1 (the ledgered change and the live weight)
        wait_for_state(lambda: "step 1/2: 60%" in (ws.root / "ledger.jsonl").read_text()
                       and live_weights(ws, "products") == {"monolith": 40, "catalog": 60},
                       "the canary's step 1/2 (catalog 60%) applied by the router", canary)
        canary.send_signal(signal.SIGINT)
        _, cerr = canary.communicate(timeout=30)
    finally:
        if canary.poll() is None:
            canary.kill()
    assert canary.returncode == 130, cerr
    assert "stays at monolith=40% catalog=60%" in cerr and "--weight 0" in cerr
    doc = json.loads(ws.run("status", "--json").stdout)
    (products,) = [r for r in doc["routes"] if r["route"] == "products"]
    assert products["weights"] == {"monolith": 40, "catalog": 60}
    # the canary's last state, as the router's overview (and so the dashboard) has it
    (rollout,) = [r for r in doc["rollouts"] if r["route"] == "products"]
    assert rollout["state"] == "interrupted" and rollout["candidate"] == "catalog" and rollout["weight"] == 60

    down = ws.run("down")
    assert "stopped:" in down.stdout
    assert "nothing is running" in ws.run("ps").stdout
    # with no router, shift edits the file (validated, ledgered) and status says no router runs
    ws.run("shift", "products", "--to", "catalog", "--weight", "0", "--reason", "offline reset")
    assert "catalog: 0" in (ws.root / "routes.yaml").read_text()
    assert "no router" in ws.run("status", "--json", check=1).stderr


def test_canary_promotes_a_healthy_candidate(ws: Workspace) -> None:
    ws.up()
    with Traffic(ws.url) as traffic:
        # latency on a busy 2-core machine is noise: this test is about promotion, the p99
        # rule is unit-tested (tests/cli/test_gate.py)
        proc = ws.run("canary", "products", "--to", "catalog", "--steps", "20,100", "--interval", "3s",
                      "--min-requests", "15", "--max-p99-ratio", "1000", "--json")
    result = json.loads(proc.stdout)
    assert result["outcome"] == "promoted"
    assert [s["weight"] for s in result["steps"]] == [20, 100]
    assert "PROMOTED" in proc.stderr
    assert traffic.failed == 0 and traffic.sent > 100
    status = json.loads(ws.run("status", "--json").stdout)
    (products,) = [r for r in status["routes"] if r["route"] == "products"]
    assert products["weights"] == {"monolith": 0, "catalog": 100}
    reasons = [e["reason"] for e in json.loads(ws.run("ledger", "--json").stdout)]
    assert any("step 1/2: 20%" in r for r in reasons) and any("complete" in r for r in reasons)


def test_canary_rolls_back_a_failing_candidate_by_itself(ws: Workspace) -> None:
    ws.up("--fault", "catalog.fail_rate=0.5")
    with Traffic(ws.url):
        proc = ws.run("canary", "products", "--to", "catalog", "--steps", "20,50,100", "--interval", "3s",
                      "--min-requests", "15", "--max-p99-ratio", "1000", check=3)
    assert "ROLLBACK at 20%" in proc.stderr and "error rate" in proc.stderr
    assert proc.stdout.startswith("rolled_back:")
    status = json.loads(ws.run("status", "--json").stdout)
    (products,) = [r for r in status["routes"] if r["route"] == "products"]
    assert products["weights"] == {"monolith": 100, "catalog": 0}
    last = json.loads(ws.run("ledger", "--json").stdout)[-1]
    assert last["new"]["catalog"] == 0 and "rollback" in last["reason"]


def test_foreground_up_stops_everything_on_ctrl_c(ws: Workspace) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "cli.main", "up", "--no-cdc", "--port", str(ws.router_port)],
                            cwd=ws.root, env=ws.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        run_dir = ws.root / ".strangler" / "run"
        while time.monotonic() < deadline and not (run_dir / "stack.json").exists():
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.2)
        ps = json.loads(ws.run("ps", "--json").stdout)
        assert len(ps) == 3 and all(p["alive"] for p in ps)
        ws.pids.extend(int(p["pid"]) for p in ps)
        assert httpx.get(ws.url + "/api/categories/").status_code == 200
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "stack stopped" in err
    assert not any(pid_alive(p) for p in ws.pids)


def test_port_in_use_is_named_and_nothing_runs(ws: Workspace) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", ws.catalog_port))
        busy.listen()
        proc = ws.run("up", "--detach", "--no-cdc", "--port", str(ws.router_port), check=1)
    assert f"catalog: port {ws.catalog_port}" in proc.stderr and "already in use" in proc.stderr
    assert json.loads(ws.run("ps", "--json").stdout) == []


@pytest.mark.postgres
def test_up_real_runs_the_shop_on_postgresql_and_down_stops_it(ws: Workspace) -> None:
    from devstack import ServiceUnavailable
    from devstack.postgres import find_bindir
    from tests.conftest import service_missing

    try:
        find_bindir()
    except ServiceUnavailable as exc:
        service_missing("PostgreSQL", exc)
    ws.up("--real")
    state = json.loads((ws.root / ".strangler" / "run" / "postgres.state").read_text())
    assert Path(state["datadir"]).is_dir()
    r = httpx.get(ws.url + "/api/products/?page_size=3")
    assert r.status_code == 200 and r.json()["count"] == 200  # seeded into PostgreSQL
    down = ws.run("down")
    assert "postgres" in down.stdout
    assert not Path(state["datadir"]).exists()


@pytest.mark.skipif(not part_present("kafka"), reason="devstack.kafka is not in this checkout")
def test_up_real_detached_with_a_local_kafka_says_why_not(ws: Workspace) -> None:
    (ws.root / "streams.yaml").write_text((REPO / "streams.yaml").read_text())
    proc = ws.run("up", "--detach", "--real", "--port", str(ws.router_port), check=1)
    assert "runs in the foreground" in proc.stderr and "STRANGLER_KAFKA_BOOTSTRAP" in proc.stderr
    assert json.loads(ws.run("ps", "--json").stdout) == []
    assert not (ws.root / ".strangler" / "run" / "postgres.state").exists()
