"""Metrics across workers: a dead worker's counters still count, its gauges do not."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import httpx

from router.metrics import BOUNDS_MS, Metrics, process_start
from tests.router.conftest import _children, eventually


def write_snapshot(folder: Path, name: str, pid: int, *, requests: int, in_flight: int,
                   breaker: str, started: int | None = None) -> None:
    buckets = [0] * (len(BOUNDS_MS) + 1)
    buckets[3] = requests
    (folder / name).write_text(json.dumps({
        "pid": pid, "started": started, "time": time.time(), "in_flight": in_flight,
        "series": [{"route": "all", "backend": "a", "requests": requests, "errors": {},
                    "statuses": {"2xx": requests}, "buckets": buckets, "sum_ms": 1.0 * requests}],
        "shadow": {}, "breakers": {"a": {"state": breaker, "consecutive_failures": 5, "opened": 1}}}))


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_a_dead_workers_gauges_are_dropped_and_its_counters_kept(tmp_path: Path) -> None:
    killed, exited = dead_pid(), dead_pid()
    # killed: its file still has the live name (SIGKILL, no supervisor to rename it)
    write_snapshot(tmp_path, f"worker-{killed}.json", killed, requests=5, in_flight=7, breaker="open")
    write_snapshot(tmp_path, f"exited-{exited}.json", exited, requests=4, in_flight=3, breaker="half_open")
    metrics = Metrics(tmp_path)
    metrics.observe("all", "a", 200, 3.0)
    for _ in range(2):  # the second read sees the renamed file: same totals
        agg = metrics.aggregate()
        assert agg["in_flight"] == 0 and agg["workers"] == 1
        assert agg["series"][("all", "a")]["requests"] == 10  # history: 5 + 4 + this worker's 1
        assert agg["breakers"]["a"]["state"] == "closed"
        assert agg["breakers"]["a"]["opened"] == 2
    assert not (tmp_path / f"worker-{killed}.json").exists()
    assert len(list(tmp_path.glob(f"exited-{killed}-*.json"))) == 1


def test_a_reused_pid_is_neither_counted_live_nor_signalled(tmp_path: Path) -> None:
    stranger = subprocess.Popen(["sleep", "30"])  # holds the pid a dead worker once had
    try:
        started = process_start(stranger.pid)
        assert started is not None
        write_snapshot(tmp_path, f"worker-{stranger.pid}.json", stranger.pid, requests=3,
                       in_flight=2, breaker="open", started=started - 1)
        agg = asyncio.run(Metrics(tmp_path).fresh_aggregate())
        assert agg["in_flight"] == 0 and agg["breakers"]["a"]["state"] == "closed"
        assert agg["series"][("all", "a")]["requests"] == 3
        time.sleep(0.1)
        assert stranger.poll() is None, "a reader signalled a process that is not a worker"
    finally:
        stranger.kill()
        stranger.wait()


def _worker_files(router_pid: int) -> dict[int, dict]:
    files = {}
    for child in _children(router_pid):
        for path in Path(tempfile.gettempdir()).glob(f"strangler-metrics-*/worker-{child}.json"):
            with contextlib.suppress(OSError, ValueError):  # being replaced right now
                files[child] = json.loads(path.read_text())
    return files


def test_a_killed_worker_leaves_no_request_in_flight(upstreams, start_router, http) -> None:
    router = start_router(f"""
ledger: ledger.jsonl
access_log: false
upstreams:
  a: {{url: "{upstreams['a'].url}"}}
routes:
  - name: all
    match: {{prefix: /}}
    backends: {{a: 100}}
""", workers=2, http=http)
    for _ in range(20):
        assert httpx.get(f"{router.url}/x").status_code == 200
    assert router.status()["routes"]["all"]["backends"]["a"]["requests"] == 20

    def hang() -> None:
        with contextlib.suppress(httpx.HTTPError):  # its worker is killed under it
            httpx.get(f"{router.url}/slow?s=20", timeout=30)

    threading.Thread(target=hang, daemon=True).start()

    def holder() -> int | None:
        router.status()  # a read makes the other worker write a fresh snapshot
        return next((pid for pid, snap in _worker_files(router.proc.pid).items() if snap["in_flight"] == 1), None)

    pid = eventually(holder, timeout=40)  # a busy machine is slow to start and flush workers
    assert isinstance(pid, int)
    os.kill(pid, signal.SIGKILL)
    # Respawned; the dead worker's request is no longer in flight, its counts still are.
    assert eventually(lambda: pid not in _children(router.proc.pid) and
                      router.status()["workers"] == 2 and router.status()["in_flight"] == 0, timeout=40)
    status = router.status()
    assert status["in_flight"] == 0 and status["routes"]["all"]["backends"]["a"]["requests"] == 20
