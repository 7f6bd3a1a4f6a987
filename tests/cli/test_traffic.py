"""`strangler traffic` against a real shop on loopback, a dying shop, and a dead URL."""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from cli.main import app
from devstack import free_port
from loadgen.engine import Traffic, TrafficConfig, TrafficError, run_traffic
from loadgen.report import Failure, Recorder, percentile, render_table
from stack.localshop import LocalShop

runner = CliRunner()


def test_drives_a_real_shop_and_reports_per_endpoint(live_shop: LocalShop) -> None:
    result = runner.invoke(app, ["traffic", live_shop.base_url, "--duration", "3", "--rate", "40",
                                 "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["ok"] is True and summary["errors"] == 0 and summary["failures"] == []
    assert summary["users"] == {"anonymous": 8, "customer": 4, "staff": 1}
    endpoints = {row["endpoint"]: row for row in summary["endpoints"]}
    # browsing, product pages, carts, logins: the mix reaches the shop's main paths
    for name in ("GET /api/products/", "GET /api/products/{id}/", "POST /api/auth/login/",
                 "POST /api/cart/items/"):
        assert endpoints[name]["requests"] > 0, name
    assert sum(r["requests"] for r in summary["endpoints"]) == summary["requests"] >= 20
    for row in summary["endpoints"]:
        assert 0 < row["p50_ms"] <= row["p99_ms"]
    assert 0 < summary["rate_achieved"] <= 40 * 1.1  # never faster than asked


def test_orders_and_price_edits_reach_the_database(live_shop: LocalShop) -> None:
    summary = run_traffic(TrafficConfig(base_url=live_shop.base_url, rate=60, duration=2.5,
                                        anonymous=0, customers=2, staff=2, seed=5))
    assert summary["ok"], summary["failures"]
    names = {row["endpoint"] for row in summary["endpoints"]}
    assert {"POST /api/orders/", "PATCH /api/products/{id}/"} <= names
    login = httpx.post(f"{live_shop.base_url}/api/auth/login/",
                       json={"username": "customer1", "password": "shop-password"})
    orders = httpx.get(f"{live_shop.base_url}/api/orders/",
                       headers={"Authorization": f"Token {login.json()['token']}"}).json()
    assert orders["count"] > 0


def test_human_table_lists_endpoints(live_shop: LocalShop) -> None:
    result = runner.invoke(app, ["traffic", live_shop.base_url, "--duration", "1", "--rate", "20"])
    assert result.exit_code == 0, result.output
    assert "GET /api/products/" in result.stdout and "no failed requests" in result.stdout


def after_requests(traffic: Traffic, count: int, then: Callable[[], None]) -> threading.Thread:
    """Call ``then`` once the run has recorded ``count`` requests (no wall-clock guessing)."""

    def watch() -> None:
        deadline = time.monotonic() + 60
        while traffic.recorder.count < count and time.monotonic() < deadline:
            time.sleep(0.02)
        then()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_failures_are_listed_with_status_and_body(live_shop: LocalShop, tmp_path) -> None:
    """The shop dies mid-run: every unanswered request is a failure, and the run says so."""
    assert live_shop.sqlite_path is not None
    shutil.copy(live_shop.sqlite_path, tmp_path / "dying.sqlite3")  # already migrated + seeded
    shop = LocalShop(sqlite_path=tmp_path / "dying.sqlite3", log_path=tmp_path / "dying.log")
    try:
        shop.start()
        traffic = Traffic(TrafficConfig(base_url=shop.base_url, rate=30, duration=3, timeout=2))
        after_requests(traffic, 25, shop.stop)
        summary = asyncio.run(traffic.run())
    finally:
        shop.stop()
    assert summary["ok"] is False
    assert summary["errors"] == summary["failures_total"] > 0
    assert summary["requests"] > summary["errors"]  # it did work before the shop died
    first = summary["failures"][0]
    assert first["status"] == 0 and "Error" in first["body"] and first["url"].startswith("/")
    assert sum(r["errors"] for r in summary["endpoints"]) == summary["errors"]


def test_http_errors_show_status_and_body_excerpt() -> None:
    recorder = Recorder()
    recorder.record("GET /x", 5.0, None)
    recorder.record("GET /x", 9.0, Failure("GET /x", "/x?a=1", 500,
                                           '{"detail": "boom"}', 1.25, "customer1"))
    summary = recorder.summary(base_url="http://h", elapsed_s=1.0, rate=2, users={"customer": 1})
    assert summary["ok"] is False
    assert summary["endpoints"] == [{"endpoint": "GET /x", "requests": 2, "errors": 1,
                                     "p50_ms": 5.0, "p99_ms": 9.0}]
    table = render_table(summary)
    assert "1 failed request(s)" in table and '500 GET /x /x?a=1 (customer1): {"detail": "boom"}' in table


def test_percentile_is_nearest_rank() -> None:
    values = [float(i) for i in range(1, 101)]
    assert percentile(values, 50) == 50.0 and percentile(values, 99) == 99.0
    assert percentile([], 99) == 0.0 and percentile([7.0], 50) == 7.0


def test_dead_url_says_so_and_exits_nonzero() -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    result = runner.invoke(app, ["traffic", dead, "--duration", "1"])
    assert result.exit_code == 1
    assert f"cannot reach the shop at {dead}" in result.stderr
    as_json = runner.invoke(app, ["traffic", dead, "--duration", "1", "--json"])
    assert as_json.exit_code == 1
    assert json.loads(as_json.stdout)["ok"] is False


def test_wrong_password_is_a_clear_error(live_shop: LocalShop) -> None:
    with pytest.raises(TrafficError, match="cannot log in as customer1: 400"):
        run_traffic(TrafficConfig(base_url=live_shop.base_url, duration=1, password="wrong"))


def test_not_a_shop_is_a_clear_error(live_shop: LocalShop) -> None:
    with pytest.raises(TrafficError, match="does not look like the shop"):
        run_traffic(TrafficConfig(base_url=f"{live_shop.base_url}/nowhere", duration=1))


@pytest.mark.parametrize("args", [
    ["ftp://x"], ["http://127.0.0.1:1", "--rate", "0"], ["http://127.0.0.1:1", "--duration", "-1"],
    ["http://127.0.0.1:1", "--anonymous", "0", "--customers", "0", "--staff", "0"],
])
def test_nonsense_options_are_usage_errors(args: list[str]) -> None:
    assert runner.invoke(app, ["traffic", *args]).exit_code == 2


def test_until_stopped_ends_when_told(live_shop: LocalShop) -> None:
    stop = threading.Event()
    traffic = Traffic(TrafficConfig(base_url=live_shop.base_url, duration=0, rate=20), stop)
    after_requests(traffic, 15, stop.set)
    summary = asyncio.run(traffic.run())  # duration 0 = forever, unless stopped
    assert summary["ok"] and summary["requests"] >= 15


def test_a_write_held_during_an_ownership_flip_is_retried_and_a_plain_503_is_not() -> None:
    """The router holds writes while tables change owner (503 writes_held + Retry-After)."""
    answers: dict[str, list[httpx.Response]] = {
        "/held": [httpx.Response(503, headers={"Retry-After": "0"}, json={"error": "writes_held"}),
                  httpx.Response(503, headers={"Retry-After": "0"}, json={"error": "writes_held"}),
                  httpx.Response(200, json={"ok": True})],
        "/down": [httpx.Response(503, headers={"Retry-After": "0"}, json={"error": "upstream_down"}),
                  httpx.Response(200, json={"ok": True})],
    }
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        return answers[request.url.path].pop(0)

    async def go() -> Traffic:
        traffic = Traffic(TrafficConfig(base_url="http://127.0.0.1:1"))
        client = httpx.AsyncClient(base_url="http://shop", transport=httpx.MockTransport(handler))
        from loadgen.engine import User

        user = User(name="staff1", kind="staff", client=client)
        assert await traffic.call(user, "PATCH held", "PATCH", "/held", json={}) is not None
        assert await traffic.call(user, "PATCH down", "PATCH", "/down", json={}) is None
        await client.aclose()
        return traffic

    traffic = asyncio.run(go())
    assert seen == ["/held", "/held", "/held", "/down"]
    assert traffic.recorder.held == 2 and traffic.recorder.failures_total == 1


class RouterAndShop:
    """An in-process shop behind the router's cohort logic, recording each request's cohort key.

    The key is what router/proxy.py `_choose` hashes: the route's cohort cookie (sessionid),
    else the anonymous cohort cookie (set, as the router does, on a visitor's first request
    without one), else the client address, which all loopback visitors share.
    """

    def __init__(self) -> None:
        import random

        self.rng = random.Random(7)  # the sessions Django and the router would draw
        self.keys: list[str] = []

    def key(self, request: httpx.Request) -> tuple[str, str | None]:
        jar = dict(part.strip().split("=", 1) for part in request.headers.get("cookie", "").split(";")
                   if "=" in part)
        if "sessionid" in jar:
            return jar["sessionid"], None
        if "strangler_cohort" in jar:
            return jar["strangler_cohort"], None
        if request.url.path.startswith("/api/products"):  # a split route: the router sets one
            new = f"{self.rng.getrandbits(64):016x}"
            return new, f"strangler_cohort={new}; Path=/"
        return "127.0.0.1", None

    def __call__(self, request: httpx.Request) -> httpx.Response:
        key, set_cookie = self.key(request)
        headers = {"set-cookie": set_cookie} if set_cookie else {}
        path = request.url.path
        if path == "/api/auth/login/":
            session = f"{self.rng.getrandbits(128):032x}"
            return httpx.Response(200, json={"token": session}, headers=[
                ("set-cookie", f"sessionid={session}; Path=/"), ("set-cookie", "csrftoken=c; Path=/")])
        if path.startswith("/api/products"):
            self.keys.append(key)
        if path == "/api/products/" and request.method == "GET":
            products = [{"id": i, "price": "10.00", "stock_count": 100} for i in range(1, 41)]
            return httpx.Response(200, json={"count": 40, "results": products}, headers=headers)
        if path == "/api/categories/":
            return httpx.Response(200, json={"count": 1, "results": [{"id": 1}]}, headers=headers)
        return httpx.Response(200, json={"id": 1, "price": "10.00"}, headers=headers)


def test_a_ten_percent_step_gets_many_cohorts_of_the_demos_mix() -> None:
    """The demo's mix (20 customers, 4 anonymous at once) at a 10% first step: the candidate's
    buckets (router.balance, the products route's salt) get many distinct cohorts, not the
    two or three of sessions plus a handful of anonymous visitors that left it empty about
    one run in nine."""
    from router import balance

    shop = RouterAndShop()
    traffic = Traffic(TrafficConfig(base_url="http://shop.test", rate=500, duration=2,
                                    anonymous=4, customers=20, staff=1, seed=1),
                      transport=httpx.MockTransport(shop))
    summary = asyncio.run(traffic.run())
    assert summary["ok"], summary["failures"][:3]
    weights = [("monolith", 90), ("catalog", 10)]
    cohorts = set(shop.keys)
    candidate = {k for k in cohorts if balance.choose(weights, salt="products", key=k) == "catalog"}
    share = sum(k in candidate for k in shop.keys) / len(shop.keys)
    assert len(cohorts) >= 150, len(cohorts)
    assert len(candidate) >= 10, f"{len(candidate)} of {len(cohorts)} cohorts in the candidate's buckets"
    assert 0.05 <= share <= 0.15  # about the step's weight, not all-or-nothing


def test_a_one_percent_step_meets_candidate_cohorts_soon_with_the_defaults() -> None:
    """`strangler traffic` as it starts (8 visitors, 4 customers, 1 staff, short visits and
    sessions): over 100 route salts, a 1% step's first candidate request comes within the
    first ~1.4/0.01 products requests on the median — near one new cohort per request, the
    floor — not after the long sessions of a few cohorts (4 visitors of 1..3 requests and
    sessions of 1..12 took about twice as long)."""
    import statistics

    from router import balance

    shop = RouterAndShop()
    config = TrafficConfig(base_url="http://shop.test", rate=1000, duration=1.5, seed=1)
    summary = asyncio.run(Traffic(config, transport=httpx.MockTransport(shop)).run())
    assert summary["ok"], summary["failures"][:3]
    weights = [("monolith", 99), ("catalog", 1)]
    assert len(shop.keys) >= 800, len(shop.keys)
    firsts = []
    for s in range(100):
        hits = [i for i, k in enumerate(shop.keys)
                if balance.choose(weights, salt=f"products{s}", key=k) == "catalog"]
        firsts.append(hits[0] if hits else len(shop.keys))
    assert statistics.median(firsts) <= 140, sorted(firsts)


def test_cohorts_are_the_same_with_the_same_seed() -> None:
    runs = []
    for _ in range(2):
        shop = RouterAndShop()
        traffic = Traffic(TrafficConfig(base_url="http://shop.test", rate=400, duration=0.5,
                                        anonymous=4, customers=0, staff=0, seed=3),
                          transport=httpx.MockTransport(shop))
        asyncio.run(traffic.run())
        runs.append(sorted(set(shop.keys)))
    assert runs[0] == runs[1] and len(runs[0]) > 20


def test_without_a_url_it_drives_the_running_stacks_router(state_dir: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from cli import traffic as command

    seen: list[TrafficConfig] = []

    def fake_run(config: TrafficConfig, stop: threading.Event | None = None) -> dict[str, object]:
        seen.append(config)
        raise TrafficError("stop here")

    monkeypatch.setattr(command, "run_traffic", fake_run)
    monkeypatch.delenv("STRANGLER_TRAFFIC_URL", raising=False)
    result = runner.invoke(app, ["traffic", "--duration", "1"])
    assert seen[-1].base_url == "http://127.0.0.1:8000"
    assert "no stack is running" in result.output and "drives the monolith" in result.output
    routes = tmp_path / "routes.yaml"
    routes.write_text("anonymous_cohort: {cookie: visitor}\n")
    (state_dir / "run").mkdir(parents=True, exist_ok=True)
    (state_dir / "run" / "stack.json").write_text(json.dumps(
        {"mode": "embedded", "router_url": "http://127.0.0.1:18080", "routes": str(routes)}))
    result = runner.invoke(app, ["traffic", "--duration", "1"])
    assert seen[-1].base_url == "http://127.0.0.1:18080" and seen[-1].cohort_cookie == "visitor"
    assert "no stack is running" not in result.output
    # with nginx/HAProxy in front (`strangler up --data-plane`): through the plane, not around it
    (state_dir / "run" / "stack.json").write_text(json.dumps(
        {"mode": "embedded", "router_url": None, "routes": str(routes), "processes": [
            {"name": "monolith", "url": "http://127.0.0.1:8000", "role": "monolith"},
            {"name": "nginx", "url": "http://127.0.0.1:18081", "role": "dataplane"}]}))
    result = runner.invoke(app, ["traffic", "--duration", "1"])
    assert seen[-1].base_url == "http://127.0.0.1:18081" and "no stack is running" not in result.output
