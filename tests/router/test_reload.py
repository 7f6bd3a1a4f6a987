"""Hot reload under load: file watch, SIGHUP and admin API; bad configs refused."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time

import httpx
import pytest

from tests.router.conftest import ADMIN_TOKEN, eventually


def config(ups: dict, a: int, b: int, interval: float = 0.05) -> str:
    return f"""
ledger: ledger.jsonl
access_log: false
reload_interval: {interval}
upstreams:
  a: {{url: "{ups['a'].url}"}}
  b: {{url: "{ups['b'].url}"}}
routes:
  - name: split
    match: {{prefix: /}}
    backends: {{a: {a}, b: {b}}}
    cohort: {{header: X-User}}
"""


@pytest.mark.slow
def test_reload_every_100ms_under_concurrent_load_fails_no_request(upstreams, start_router, http) -> None:
    router = start_router(config(upstreams, 50, 50), http=http)
    results: list[int] = []
    backends: set[str] = set()
    stop = threading.Event()

    async def load() -> None:
        async with httpx.AsyncClient(base_url=router.url, timeout=10,
                                     limits=httpx.Limits(max_connections=16)) as client:
            async def worker(n: int) -> None:
                i = 0
                while not stop.is_set():
                    i += 1
                    try:
                        r = await client.get(f"/w{n}/{i}", headers={"X-User": f"{n}-{i}"})
                        results.append(r.status_code)
                        backends.add(r.headers.get("x-strangler-backend", "?"))
                    except httpx.HTTPError as exc:
                        results.append(-1)
                        print("request failed:", exc)
            await asyncio.gather(*(worker(n) for n in range(8)))

    thread = threading.Thread(target=lambda: asyncio.run(load()))
    thread.start()
    try:
        deadline = time.monotonic() + 3
        i = 0
        while time.monotonic() < deadline:
            i += 1
            router.write_config(config(upstreams, i % 101, 100 - i % 101))
            if i % 5 == 0:
                router.proc.send_signal(signal.SIGHUP)
            time.sleep(0.1)
    finally:
        stop.set()
        thread.join(30)
    assert len(results) > 100
    assert all(s == 200 for s in results), {s: results.count(s) for s in set(results)}
    assert backends == {"a", "b"}


def test_bad_config_is_refused_and_the_old_one_keeps_serving(upstreams, start_router) -> None:
    router = start_router(config(upstreams, 0, 100))
    good = router.config.read_text()
    router.write_config(good.replace("b: 100}", "b: 90}"))  # sums to 90
    eventually(lambda: router.status()["config"]["last_reload"]["ok"] is False)
    status = router.status()
    assert status["config"]["last_reload"]["ok"] is False
    assert "sum to 90" in status["config"]["last_reload"]["error"]
    assert "fix:" in status["config"]["last_reload"]["error"]
    for _ in range(10):
        r = httpx.get(f"{router.url}/x")
        assert r.status_code == 200 and r.headers["x-strangler-backend"] == "b"
    router.write_config("routes: [oops")
    router.proc.send_signal(signal.SIGHUP)
    assert eventually(lambda: router.log.read_text().count("refused") >= 2)
    assert httpx.get(f"{router.url}/x").headers["x-strangler-backend"] == "b"
    router.write_config(good.replace("a: 0, b: 100", "a: 100, b: 0"))
    assert eventually(lambda: httpx.get(f"{router.url}/x").headers["x-strangler-backend"] == "a")
    assert router.status()["config"]["last_reload"]["ok"] is True


def test_hand_edits_are_ledgered_once_by_the_leader(upstreams, start_router) -> None:
    router = start_router(config(upstreams, 100, 0))
    router.write_config(config(upstreams, 80, 20))
    ledger_file = router.config.parent / "ledger.jsonl"
    eventually(lambda: ledger_file.exists() and ledger_file.read_text())
    time.sleep(0.3)  # room for a (wrong) second entry to show up
    lines = [json.loads(x) for x in (router.config.parent / "ledger.jsonl").read_text().splitlines()]
    assert len(lines) == 1
    assert lines[0]["route"] == "split" and lines[0]["actor"] == "file-watch"
    assert lines[0]["old"] == {"a": 100, "b": 0} and lines[0]["new"] == {"a": 80, "b": 20}


def test_admin_weight_change_applies_at_once_and_is_ledgered(upstreams, start_router) -> None:
    router = start_router(config(upstreams, 100, 0, interval=30))
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    r = httpx.post(f"{router.url}/_strangler/routes/split/weights", headers=auth,
                   json={"backend": "b", "weight": 100, "reason": "cut over"})
    assert r.status_code == 200, r.text
    assert r.json()["ledger"]["new"] == {"a": 0, "b": 100}
    assert httpx.get(f"{router.url}/x").headers["x-strangler-backend"] == "b"
    assert "b: 100" in router.config.read_text()
    entries = router.admin("ledger").json()
    assert [e["actor"] for e in entries] == ["admin-api"]
    # invalid change: refused with the reason, nothing changes
    before = router.config.read_text()
    r = httpx.post(f"{router.url}/_strangler/routes/split/weights", headers=auth,
                   json={"backend": "zzz", "weight": 5, "reason": "typo"})
    assert r.status_code == 422 and "no backend" in r.json()["detail"]
    assert router.config.read_text() == before
    # reload through the admin API
    router.write_config(config(upstreams, 100, 0, interval=30))
    r = httpx.post(f"{router.url}/_strangler/reload", headers=auth)
    assert r.status_code == 200 and r.json()["changed"] is True
    assert httpx.get(f"{router.url}/x").headers["x-strangler-backend"] == "a"
    assert os.path.exists(router.config)


def test_in_flight_requests_finish_on_the_config_they_started_with(upstreams, start_router) -> None:
    import concurrent.futures

    router = start_router(config(upstreams, 100, 0))
    moved = f"""
ledger: ledger.jsonl
access_log: false
reload_interval: 0.05
upstreams:
  b: {{url: "{upstreams['b'].url}"}}
routes:
  - name: split
    match: {{prefix: /}}
    backends: {{b: 100}}
"""
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        slow = [pool.submit(httpx.get, f"{router.url}/slow?s=3", timeout=30) for _ in range(4)]
        deadline = time.monotonic() + 20
        while router.status()["in_flight"] < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert router.status()["in_flight"] == 4
        router.write_config(moved)  # upstream `a` disappears from the config mid-request
        r = httpx.post(f"{router.url}/_strangler/reload", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        assert r.status_code == 200
        assert router.status()["in_flight"] == 4  # the swap happened while they were in flight
        assert httpx.get(f"{router.url}/x").headers["x-strangler-backend"] == "b"
        for future in slow:
            r = future.result()
            assert r.status_code == 200 and r.json()["upstream"] == "a"
