"""Admin API: token rules, status/routes/metrics, never forwarded upstream."""

from __future__ import annotations

import httpx
import pytest

from tests.router.conftest import ADMIN_TOKEN, eventually


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


@pytest.mark.slow
def test_metrics_are_summed_over_several_workers(upstreams, start_router) -> None:

    router = start_router(config(upstreams), workers=2)
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
