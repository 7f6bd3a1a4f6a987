"""The dashboard's server side: the page, its event stream, the overview, the rollout buttons."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import httpx

from devstack import free_port
from router import rollouts
from router.overview import window
from tests.router.conftest import ADMIN_TOKEN, AUTH

READ_TOKEN = "test-read-token-9876543210"


def config(ups: dict) -> str:
    return f"""
ledger: ledger.jsonl
access_log: false
upstreams:
  a: {{url: "{ups['a'].url}"}}
  b: {{url: "{ups['b'].url}"}}
routes:
  - name: split
    match: {{prefix: /}}
    backends: {{a: 100, b: 0}}
"""


def first_events(url: str, headers: dict[str, str], n: int) -> list[dict]:
    """The first `n` overview events of /_strangler/events, then hang up."""
    found = []
    with httpx.stream("GET", f"{url}/_strangler/events", headers=headers, timeout=10) as resp:
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
        for line in resp.iter_lines():
            if line.startswith("data: "):
                found.append(json.loads(line[6:]))
                if len(found) == n:
                    return found
    raise AssertionError(f"the stream ended after {len(found)} events")


def test_the_page_holds_no_data_and_every_read_behind_it_needs_a_token(upstreams, start_router, http) -> None:
    router = start_router(config(upstreams), http=http, env={"STRANGLER_ADMIN_READ_TOKEN": READ_TOKEN})
    page = httpx.get(f"{router.url}/_strangler/ui", timeout=10)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    # nothing loads from elsewhere: no CDN, no external script (the machine may be offline)
    assert "default-src 'none'" in page.headers["content-security-policy"]
    text = page.text.replace('"http://www.w3.org/2000/svg"', "")  # a namespace name, not fetched
    assert "http://" not in text and "https://" not in text and "<script src" not in text
    assert upstreams["a"].url not in page.text  # no data in the page itself
    for endpoint in ("events", "overview"):
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {ADMIN_TOKEN}"}):
            r = httpx.get(f"{router.url}/_strangler/{endpoint}", headers=headers, timeout=10)
            assert r.status_code == 401, (endpoint, headers, r.text)
            assert "routes" not in r.text
    assert router.admin("overview", READ_TOKEN).status_code == 200


def test_events_carry_the_overview_and_the_split_since_the_last_event(upstreams, start_router, http) -> None:
    router = start_router(config(upstreams), http=http)
    with router.client() as c:
        for i in range(10):
            assert c.get(f"/echo/{i}").status_code == 200
    first, second = first_events(router.url, AUTH, 2)
    assert first["status"]["routes"]["split"]["weights"] == {"a": 100, "b": 0}
    assert first["window"]["split"]["backends"]["a"]["requests"] == 10  # since start
    assert first["window"]["split"]["backends"]["a"]["share"] == 1.0
    assert second["window"]["split"]["requests"] == 0  # nothing between the two events
    assert second["window_seconds"] > 0.5
    assert {"streams", "rollouts", "owners", "ledger", "shadow"} <= set(first)


def test_window_is_the_difference_of_two_status_documents() -> None:
    def doc(a: int, b: int, a_err: int) -> dict:
        empty = [0] * 14
        return {"routes": {"r": {"weights": {"a": 50, "b": 50}, "backends": {
            "a": {"requests": a, "errors": {"status_500": a_err}, "buckets": [a, *empty[1:]]},
            "b": {"requests": b, "errors": {}, "buckets": [b, *empty[1:]], "breaker": "open"}}}}}

    w = window(doc(30, 10, 4), doc(10, 0, 1))["r"]
    assert w["requests"] == 30 and w["backends"]["a"]["requests"] == 20
    assert w["backends"]["b"]["share"] == 1 / 3 and w["backends"]["a"]["errors"] == 3
    assert w["backends"]["b"]["breaker"] == "open" and w["backends"]["b"]["error_rate"] == 0
    assert window(doc(5, 0, 0), doc(10, 0, 1))["r"]["backends"]["a"]["requests"] == 5  # a restart


def test_rollout_buttons_need_the_admin_token_a_running_rollout_and_are_ledgered(
        upstreams, start_router, tmp_path: Path) -> None:
    state = tmp_path / "state"
    router = start_router(config(upstreams), env={"STRANGLER_STATE_DIR": str(state),
                                                  "STRANGLER_ADMIN_READ_TOKEN": READ_TOKEN})
    url = f"{router.url}/_strangler/rollouts/split/pause"
    body = {"reason": "looks odd", "actor": "alice@dashboard"}
    assert httpx.post(url, json=body, timeout=10).status_code == 401
    assert httpx.post(url, json=body, headers={"Authorization": "Bearer wrong"}, timeout=10).status_code == 401
    r = httpx.post(url, json=body, headers={"Authorization": f"Bearer {READ_TOKEN}"}, timeout=10)
    assert r.status_code == 403 and "may only read" in r.json()["detail"]
    r = httpx.post(url, json=body, headers=AUTH, timeout=10)
    assert r.status_code == 409 and "no rollout" in r.json()["detail"]  # none runs
    where = state / "rollouts"
    rollouts.publish(where, {"route": "split", "candidate": "b", "state": "running", "step": 1,
                             "steps": [10, 50], "weight": 10})
    assert httpx.post(f"{router.url}/_strangler/rollouts/split/explode", json=body, headers=AUTH,
                      timeout=10).status_code == 404
    r = httpx.post(url, json=body, headers=AUTH, timeout=10)
    assert r.status_code == 202, r.text
    assert rollouts.take(where, "split")["action"] == "pause"
    assert rollouts.take(where, "split") is None  # taken once
    entry = router.admin("ledger").json()[-1]
    assert entry["kind"] == "rollout-control" and entry["action"] == "pause"
    assert entry["actor"] == "alice@dashboard" and entry["reason"] == "looks odd"
    view = router.admin("overview").json()
    assert view["rollouts"][0]["route"] == "split" and view["rollouts"][0]["state"] == "running"
    # a rollout whose process is gone is not offered buttons any more
    rollouts._write(where / "split.json", {**view["rollouts"][0], "pid": 999_999_999})
    assert router.admin("overview").json()["rollouts"][0]["state"] == "gone"
    assert httpx.post(url, json=body, headers=AUTH, timeout=10).status_code == 409


def test_an_open_dashboard_does_not_hold_a_stopping_router(upstreams, start_router) -> None:
    router = start_router(config(upstreams))
    with httpx.stream("GET", f"{router.url}/_strangler/events", headers=AUTH, timeout=10) as resp:
        next(resp.iter_lines())
        t0 = time.monotonic()
        router.proc.terminate()
        router.proc.wait(15)
    assert time.monotonic() - t0 < 12


def test_with_admin_listen_the_dashboard_is_only_on_the_admin_listener(upstreams, start_router) -> None:
    admin_port = free_port()
    text = config(upstreams).replace("access_log: false", f'access_log: false\nadmin_listen: "127.0.0.1:{admin_port}"')
    router = start_router(text, health_port=admin_port)
    assert httpx.get(f"{router.url}/_strangler/ui", timeout=10).status_code == 404
    assert httpx.get(f"{router.url}/_strangler/overview", headers=AUTH, timeout=10).status_code == 404
    admin = f"http://127.0.0.1:{admin_port}/_strangler"
    assert "<title>Strangler" in httpx.get(f"{admin}/ui", timeout=10).text
    assert httpx.get(f"{admin}/overview", headers=AUTH, timeout=10).json()["status"]["routes"]["split"]


def test_a_killed_rollout_process_not_yet_reaped_is_not_alive() -> None:
    """A controller killed with -9 whose parent is gone stays a zombie where nothing reaps
    orphans: `rollout status` and the dashboard must call it gone, not running."""
    import subprocess
    import sys

    from tests.router.conftest import eventually

    proc = subprocess.Popen([sys.executable, "-c", "pass"])  # exits at once; not waited for yet
    try:
        def zombie() -> bool:
            stat = Path(f"/proc/{proc.pid}/stat").read_text()
            return stat[stat.rfind(")") + 2] == "Z"
        assert eventually(zombie)
        assert not rollouts.alive(proc.pid)
    finally:
        proc.wait()
    assert not rollouts.alive(proc.pid) and rollouts.alive(os.getpid())
