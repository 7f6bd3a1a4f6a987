"""The dashboard in a real browser: Debian's chromium, driven by Selenium through chromedriver.

Against a running router and two real upstreams (plus one that refuses connections): a wrong
token is refused, the right one shows the split; a weight change shows in the observed split;
a canary toward the dead upstream rolls back and the page shows it; the Pause and Abort
buttons stop a second canary. Saves a screenshot (the test's tmp folder, and
STRANGLER_DASHBOARD_SCREENSHOT when set: how docs/dashboard.png is made).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from control.routerapi import RouterAPI
from control.routercontrol import RolloutFiles
from devstack import apt, free_port
from rollout.canary import CanaryPlan, CanaryResult, run_canary
from rollout.gate import Gate
from tests.router.conftest import ADMIN_TOKEN, AUTH

pytestmark = pytest.mark.slow


OWNERSHIP = """\
version: 1
groups:
  catalog:
    owner: monolith
    sides:
      monolith: {stream: catalog, tables: [catalog_product, catalog_category]}
      catalog: {stream: catalog_reverse, tables: [products, categories]}
"""


def config(ups: dict, dead_port: int) -> str:
    return f"""
ledger: ledger.jsonl
access_log: false
ownership: ownership.yaml
upstreams:
  monolith: {{url: "{ups['a'].url}"}}
  catalog: {{url: "{ups['b'].url}"}}
  orders: {{url: "http://127.0.0.1:{dead_port}", connect_timeout: 0.5}}
routes:
  - name: products
    match: {{prefix: /api/products}}
    writes: catalog
    backends: {{monolith: 100, catalog: 0}}
  - name: orders
    match: {{prefix: /api/orders, methods: [GET]}}
    backends: {{monolith: 100, orders: 0}}
"""


@pytest.fixture
def browser() -> Iterator[object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = apt.require("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1400,1700", "--no-first-run", "--disable-extensions"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=apt.require("chromedriver")))
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()


class Traffic(threading.Thread):
    """Steady requests on both routes from ever new visitors until stopped (~60/s)."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.stopping = url, threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=5) as c:
            while not self.stopping.is_set():
                for path in ("/api/products/1", "/api/orders/1"):
                    c.cookies.clear()  # a new visitor each time: no sticky cohort cookie
                    with contextlib.suppress(httpx.HTTPError):
                        c.get(path)
                time.sleep(0.03)


def canary(url: str, ledger: Path, route: str, to: str, steps: tuple[int, ...], interval: float,
           out: list[CanaryResult]) -> threading.Thread:
    def run() -> None:
        with RouterAPI(url, token=ADMIN_TOKEN) as api:
            from control.routercontrol import RouterControl

            plan = CanaryPlan(route=route, candidate=to, steps=steps, interval=interval,
                              gate=Gate(min_requests=5), max_wait=60.0, poll=0.2)
            out.append(run_canary(RouterControl(api, ledger=None), plan, say=lambda _: None,
                                  board=RolloutFiles(ledger, route)))

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_the_dashboard_shows_the_split_a_rollback_and_stops_a_canary(
        upstreams, start_router, browser, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser
    state = tmp_path / "state"
    monkeypatch.setenv("STRANGLER_STATE_DIR", str(state))  # the canary's board, beside the router's
    (tmp_path / "ownership.yaml").write_text(OWNERSHIP)
    (state / "cdc").mkdir(parents=True)  # a running stream's metrics file (cdc/metrics.py)
    (state / "cdc" / "catalog.json").write_text(json.dumps({
        "stream": "catalog", "state": "streaming", "events": 1200, "events_per_s": 85.0, "lag_ms": 140.0,
        "wal_bytes_behind": 8192, "dead_letters": 2, "pid": os.getpid(), "updated": time.time()}))
    router = start_router(config(upstreams, free_port()), env={"STRANGLER_STATE_DIR": str(state)})
    ledger = router.config.parent / "ledger.jsonl"
    wait = WebDriverWait(driver, 15, poll_frequency=0.1)

    def text(css: str) -> str:  # in one step: the page redraws itself on every event
        return str(driver.execute_script(
            "const e = document.querySelector(arguments[0]); return e ? e.textContent : ''", css))

    def login(token: str) -> None:
        box = driver.find_element(By.ID, "token")
        box.send_keys(token)
        driver.find_element(By.ID, "connect").click()

    traffic = Traffic(router.url)
    try:
        driver.get(f"{router.url}/_strangler/ui")
        login("wrong-token")  # refused, and nothing is shown
        wait.until(lambda d: "refused (401)" in text("#conn"))
        assert driver.find_elements(By.CSS_SELECTOR, "[data-route]") == []
        login(ADMIN_TOKEN)
        wait.until(lambda d: text("#conn") == "live")
        assert driver.execute_script("return sessionStorage.getItem('strangler-admin-token')") == ADMIN_TOKEN
        row = '#routes [data-route="products"] tr[data-backend="{}"] td[data-field="{}"]'
        wait.until(lambda d: text(row.format("monolith", "weight")) == "100%")
        assert text(row.format("monolith", "split")) == "–"  # observed, not the weight: no request yet
        traffic.start()
        wait.until(lambda d: text(row.format("monolith", "split")) == "100.0%")
        assert text(row.format("catalog", "weight")) == "0%"
        stream = text('#streams tr[data-stream="catalog"]')
        assert "streaming" in stream and "140.0 ms" in stream and "8192" in stream
        assert "owner: writes" in text('#owners tr[data-group="catalog"]')
        assert "catalog_product, catalog_category" in text("#owners")

        # A weight change: the page shows the new weight, then the observed split follows it.
        r = httpx.post(f"{router.url}/_strangler/routes/products/weights", headers=AUTH, timeout=10,
                       json={"backend": "catalog", "weight": 50, "reason": "half"})
        assert r.status_code == 200, r.text
        wait.until(lambda d: text(row.format("catalog", "weight")) == "50%")
        wait.until(lambda d: 20.0 <= float(text(row.format("catalog", "split")).rstrip("%") or 0) <= 80.0)

        # A canary toward an upstream that refuses connections: the gate rolls it back.
        results: list[CanaryResult] = []
        canary(router.url, ledger, "orders", "orders", (50,), 1.0, results).join(30)
        assert results and results[0].outcome == "rolled_back"
        wait.until(lambda d: text('#rollouts [data-route="orders"] [data-field="state"]') == "rolled back")
        assert "candidate error rate 100.00%" in text('#rollouts [data-route="orders"] [data-field="verdict"]')
        wait.until(lambda d: "canary rollback at 50%" in text("#ledger"))
        orders_row = '#routes [data-route="orders"] tr[data-backend="orders"] td[data-field="weight"]'
        assert text(orders_row) == "0%"

        # A second canary: Pause, then Abort (with its confirm dialog), from the page.
        second: list[CanaryResult] = []
        thread = canary(router.url, ledger, "products", "catalog", (60, 100), 60.0, second)
        products = '#rollouts [data-route="products"]'
        wait.until(lambda d: text(f"{products} [data-field=state]") == "running")
        assert "left in this step" in text(f"{products} [data-field=countdown]")
        driver.find_element(By.CSS_SELECTOR, f'{products} button[data-action="pause"]').click()
        wait.until(lambda d: text(f"{products} [data-field=state]") == "paused")
        driver.find_element(By.CSS_SELECTOR, f'{products} button[data-action="abort"]').click()
        driver.switch_to.alert.accept()
        thread.join(15)
        assert second and second[0].outcome == "aborted"
        wait.until(lambda d: text(f"{products} [data-field=state]") == "aborted")
        wait.until(lambda d: text(row.format("catalog", "weight")) == "0%")
        wait.until(lambda d: "rollout abort" in text("#ledger") and "canary aborted at 60%" in text("#ledger"))
        time.sleep(1.5)  # one more event, so the chart shows the fall to 0
    finally:
        traffic.stopping.set()
        shot = tmp_path / "dashboard.png"
        driver.save_screenshot(str(shot))
        if os.environ.get("STRANGLER_DASHBOARD_SCREENSHOT"):
            shutil.copy(shot, os.environ["STRANGLER_DASHBOARD_SCREENSHOT"])
    assert shot.stat().st_size > 10_000
