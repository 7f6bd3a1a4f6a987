"""Admin API: token rules, status/routes/metrics, never forwarded upstream."""

from __future__ import annotations

import json
import threading

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from router import rollouts
from tests.router.conftest import ADMIN_TOKEN, eventually, raw_request


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


def test_writes_without_a_configured_token_are_refused(upstreams, start_router) -> None:
    router = start_router(config(upstreams), env={"STRANGLER_ADMIN_TOKEN": ""})
    before = router.config.read_text()
    r = httpx.post(f"{router.url}/_strangler/routes/split/weights",
                   headers={"Authorization": "Bearer anything"},
                   json={"backend": "b", "weight": 50, "reason": "x"})
    assert r.status_code == 403 and "STRANGLER_ADMIN_TOKEN" in r.json()["detail"]
    assert router.config.read_text() == before


def test_wrong_or_missing_token_is_401_and_nothing_changes(upstreams, start_router) -> None:
    router = start_router(config(upstreams))
    before = router.config.read_text()
    url = f"{router.url}/_strangler/routes/split/weights"
    body = {"backend": "b", "weight": 50, "reason": "x"}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {ADMIN_TOKEN}"},
                    {"Authorization": f"Bearer {ADMIN_TOKEN}x"}):
        r = httpx.post(url, headers=headers, json=body)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert httpx.post(f"{router.url}/_strangler/reload").status_code == 401
    assert router.config.read_text() == before
    r = httpx.post(url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, content=b"not json")
    assert r.status_code == 400


def test_status_routes_and_metrics(upstreams, start_router) -> None:
    router = start_router(config(upstreams))
    with router.client() as client:
        for _ in range(20):
            assert client.get("/x").status_code == 200
        client.get("/status/503")
    status = router.status()
    a = status["routes"]["split"]["backends"]["a"]
    assert status["routes"]["split"]["weights"] == {"a": 100, "b": 0}
    assert a["requests"] == 21 and a["errors"] == {"status_503": 1}
    assert sum(a["buckets"]) == 21 and a["p50_ms"] is not None and a["p99_ms"] >= a["p50_ms"]
    assert status["breakers"]["a"]["state"] == "closed"
    routes = router.admin("routes").json()
    assert routes["routes"][0]["name"] == "split"
    text = router.admin("metrics").text
    assert 'strangler_requests_total{route="split",backend="a"} 21' in text
    assert 'strangler_errors_total{route="split",backend="a",kind="status_503"} 1' in text
    assert 'strangler_request_duration_seconds_count{route="split",backend="a"} 21' in text
    # admin paths never reach an upstream
    assert router.admin("nope").status_code == 404
    assert router.status()["routes"]["split"]["backends"]["a"]["requests"] == 21


def test_metrics_show_each_backends_weight_and_the_candidate(upstreams, start_router) -> None:
    """The canary's step as Prometheus sees it: the candidate's weight, changed by the admin API."""
    router = start_router(config(upstreams))
    text = router.admin("metrics").text
    assert 'strangler_route_weight{route="split",backend="b"} 0\n' in text
    assert 'strangler_route_backend_info{route="split",backend="a",role="current"} 1' in text
    assert 'strangler_route_backend_info{route="split",backend="b",role="candidate"} 1' in text
    r = httpx.post(f"{router.url}/_strangler/routes/split/weights",
                   headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                   json={"backend": "b", "weight": 25, "reason": "canary step"})
    assert r.status_code == 200, r.text
    assert eventually(lambda: 'strangler_route_weight{route="split",backend="b"} 25\n'
               in router.admin("metrics").text)
    assert 'strangler_route_weight{route="split",backend="a"} 75\n' in router.admin("metrics").text


def test_metrics_show_the_rollout_strangler_canary_publishes(upstreams, start_router, tmp_path) -> None:
    """A canary's step, its steps and state, as the canary loop publishes them (router/rollouts.py)."""
    state = tmp_path / "state"
    router = start_router(config(upstreams), env={"STRANGLER_STATE_DIR": str(state)})
    where = state / "rollouts"
    rollouts.publish(where, {"route": "split", "candidate": "b", "steps": [5, 25, 50, 100], "step": 2,
                             "weight": 25, "state": "running"})
    text = router.admin("metrics").text
    labels = 'route="split",candidate="b"'
    assert f"strangler_rollout_step{{{labels}}} 2\n" in text
    assert f"strangler_rollout_steps{{{labels}}} 4\n" in text
    assert f"strangler_rollout_weight{{{labels}}} 25\n" in text
    assert f'strangler_rollout_state{{{labels},state="running"}} 1\n' in text
    assert f'strangler_rollout_state{{{labels},state="aborted"}} 0\n' in text
    rollouts.publish(where, {"route": "split", "candidate": "b", "steps": [5, 25, 50, 100], "step": 2,
                             "weight": 0, "state": "aborted"})
    text = router.admin("metrics").text
    assert f'strangler_rollout_state{{{labels},state="aborted"}} 1\n' in text
    assert f"strangler_rollout_weight{{{labels}}} 0\n" in text


@pytest.mark.slow
def test_a_scrape_during_reloads_is_complete_and_consistent(upstreams, start_router) -> None:
    """Weights change and the file is reloaded 20 times while Prometheus-style scrapes run:
    every scrape parses whole, shows one config's weights (they add up to 100), and no
    counter goes backwards (a reload keeps the counts)."""
    router = start_router(config(upstreams), workers=2)
    for _ in range(20):
        assert httpx.get(f"{router.url}/anything", timeout=10).status_code == 200
    done = threading.Event()
    failures: list[str] = []

    def reload_many() -> None:
        try:
            for i in range(20):
                weight = (i * 37) % 101
                r = httpx.post(f"{router.url}/_strangler/routes/split/weights", timeout=10,
                               headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                               json={"backend": "b", "weight": weight, "reason": f"step {i}"})
                if r.status_code != 200:
                    failures.append(r.text)
                httpx.get(f"{router.url}/anything", timeout=10)
        finally:
            done.set()

    worker = threading.Thread(target=reload_many)
    worker.start()
    last: dict[tuple[str, ...], float] = {}
    scrapes = 0
    while not done.is_set() or scrapes < 5:
        r = router.admin("metrics")
        assert r.status_code == 200
        families = {f.name: f for f in text_string_to_metric_families(r.text)}  # parses whole
        weights = {s.labels["backend"]: s.value for s in families["strangler_route_weight"].samples
                   if s.labels["route"] == "split"}
        assert set(weights) == {"a", "b"} and sum(weights.values()) == 100, weights
        for sample in families["strangler_requests"].samples:
            key = (sample.name, *sorted(sample.labels.items()))  # type: ignore[arg-type]
            assert sample.value >= last.get(key, 0), (key, sample.value, last.get(key))
            last[key] = sample.value
        scrapes += 1
    worker.join()
    assert failures == [] and scrapes >= 5


@pytest.mark.slow
def test_metrics_are_summed_over_several_workers(upstreams, start_router) -> None:

    router = start_router(config(upstreams), workers=2)
    assert eventually(lambda: router.status()["workers"] == 2, timeout=40)  # both are up
    for _ in range(60):  # new connections: spread over the workers by the kernel
        assert httpx.get(f"{router.url}/x").status_code == 200
    # Each read (served by either worker) asks the other for fresh numbers: always exact.
    reads = [router.status() for _ in range(10)]
    assert [s["routes"]["split"]["backends"]["a"]["requests"] for s in reads] == [60] * 10
    status = reads[-1]
    assert status["workers"] == 2
    # a weight change through one worker reaches every worker
    r = httpx.post(f"{router.url}/_strangler/routes/split/weights",
                   headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                   json={"backend": "b", "weight": 100, "reason": "all in"})
    assert r.status_code == 200
    assert eventually(lambda: {httpx.get(f"{router.url}/x").headers["x-strangler-backend"]
                               for _ in range(20)} == {"b"})
    lines = (router.config.parent / "ledger.jsonl").read_text().splitlines()
    assert len(lines) == 1


READ_TOKEN = "test-read-token-abcdef"
ADMIN_READS = ("status", "routes", "metrics", "ledger")


def raw_admin(port: int, target: str, token: str | None = None, method: str = "GET") -> tuple[int, bytes, bytes]:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    answer = raw_request(port, f"{method} {target} HTTP/1.1\r\nHost: shop\r\n{auth}Content-Length: 0\r\n\r\n".encode())
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), head.lower(), body


def test_every_admin_read_needs_a_read_or_admin_token(upstreams, start_router, http) -> None:
    router = start_router(config(upstreams), http=http, env={"STRANGLER_ADMIN_READ_TOKEN": READ_TOKEN})
    for endpoint in ADMIN_READS:
        target = f"/_strangler/{endpoint}"
        for wrong in (None, "wrong", READ_TOKEN + "x"):
            status, head, _ = raw_admin(router.port, target, wrong)
            assert status == 401 and b"www-authenticate: bearer" in head, (endpoint, wrong)
        assert raw_admin(router.port, target, READ_TOKEN)[0] == 200, endpoint
        assert raw_admin(router.port, target, ADMIN_TOKEN)[0] == 200, endpoint
    # the read token never writes
    status, _, body = raw_admin(router.port, "/_strangler/reload", READ_TOKEN, "POST")
    assert status == 403 and b"only read" in body
    assert raw_admin(router.port, "/_strangler/reload", ADMIN_TOKEN, "POST")[0] == 200
    # a liveness probe needs no token and learns nothing else
    status, _, body = raw_admin(router.port, "/_strangler/healthz")
    assert status == 200 and json.loads(body) == {"ok": True}


def test_with_no_token_configured_admin_reads_are_refused(upstreams, start_router, http) -> None:
    router = start_router(config(upstreams), http=http, env={"STRANGLER_ADMIN_TOKEN": ""})
    for endpoint in ADMIN_READS:
        status, _, body = raw_admin(router.port, f"/_strangler/{endpoint}", "anything")
        assert status == 403 and b"STRANGLER_ADMIN_READ_TOKEN" in body


SPELLINGS = ["/api/../_strangler/routes", "//_strangler/routes", "/%5Fstrangler/routes",
             "/%5fstrangler/routes", "/./_strangler/routes", "/x/%2E%2E/_strangler/routes",
             "/_strangler//routes", "/_strangler/./routes", "/_strangler/routes/",
             "/_strangler/routes#x", "http://shop/_strangler/routes"]
CASE_VARIANTS = ["/_STRANGLER/routes", "/_Strangler/routes", "/%5FSTRANGLER/status", "/_stranglerx/routes"]


def test_no_spelling_of_the_admin_prefix_reaches_an_upstream(upstreams, start_router, http) -> None:
    router = start_router(config(upstreams), http=http)
    for target in SPELLINGS + CASE_VARIANTS:
        status, head, body = raw_admin(router.port, target)
        assert status == 401, (target, status, body)  # the admin API answered: no token, nothing served
        assert b"x-strangler-backend" not in head and b'"upstream"' not in body, target
        status, head, body = raw_admin(router.port, target, ADMIN_TOKEN)
        assert b"x-strangler-backend" not in head and b'"upstream"' not in body, target
        if target in SPELLINGS:
            assert status == 200 and json.loads(body)["routes"][0]["name"] == "split", target
        else:
            assert status == 404, target  # not an admin endpoint, and never forwarded


def test_the_cli_reads_with_the_read_token_and_writes_with_the_admin_token(
        upstreams, start_router, monkeypatch, tmp_path) -> None:
    from control.errors import AdminRefused
    from control.routerapi import RouterAPI

    router = start_router(config(upstreams), env={"STRANGLER_ADMIN_READ_TOKEN": READ_TOKEN})
    monkeypatch.setenv("STRANGLER_STATE_DIR", str(tmp_path / "state"))  # no stored admin token
    monkeypatch.delenv("STRANGLER_ADMIN_TOKEN", raising=False)
    monkeypatch.setenv("STRANGLER_ADMIN_READ_TOKEN", READ_TOKEN)
    with RouterAPI(router.url) as api:
        assert api.status()["routes"]["split"]["weights"] == {"a": 100, "b": 0}
        assert api.routes()["routes"][0]["name"] == "split"
        with pytest.raises(AdminRefused, match="only read"):
            api.set_weight("split", "b", 10, "canary")
    monkeypatch.delenv("STRANGLER_ADMIN_READ_TOKEN")
    with RouterAPI(router.url) as api, pytest.raises(AdminRefused, match="STRANGLER_ADMIN_READ_TOKEN"):
        api.status()
    with RouterAPI(router.url, token=ADMIN_TOKEN) as api:
        assert api.status()["routes"]["split"]["weights"] == {"a": 100, "b": 0}
        assert api.set_weight("split", "b", 10, "canary")["ok"] is True
