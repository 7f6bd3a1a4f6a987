"""A real Prometheus (Debian's binary) on loopback scrapes a running stack — CDC's exporter over
a stream on a real PostgreSQL, and the router — with deploy/prometheus's rules loaded, and an
alert fires once a fault is injected: the stream's process is killed (StranglerCDCStreamDown).

Kept lean: 1 s scrape and evaluation intervals, and every rule's `for:` shortened to 1 s (the
shipped durations are for production; promtool's tests exercise them)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from devstack import free_port
from devstack.apt import require
from tests.cdc.conftest import Env, cdc_env, sql, start_exporter  # noqa: F401 - cdc_env: a fixture
from tests.cdc.test_prom import samples, value
from tests.deploy.metric_names import RULES
from tests.router.conftest import ADMIN_TOKEN, start_router, stop, upstreams  # noqa: F401 - fixtures

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def rules_with_short_for(target: Path, for_: str = "1s") -> Path:
    doc = yaml.safe_load(RULES.read_text())
    for group in doc["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = for_
    target.write_text(yaml.safe_dump(doc))
    return target


def target(url: str) -> str:
    return url.split("//", 1)[1].split("/", 1)[0]


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Any]:
    binary = require("prometheus")
    started: list[subprocess.Popen[bytes]] = []

    def start(cdc_url: str, router_url: str) -> str:
        (tmp_path / "token").write_text(ADMIN_TOKEN)
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(rules_with_short_for(tmp_path / "rules.yml"))],
            "scrape_configs": [
                {"job_name": "strangler-cdc", "static_configs": [{"targets": [target(cdc_url)]}]},
                {"job_name": "strangler-router", "metrics_path": "/_strangler/metrics",
                 "authorization": {"credentials_file": str(tmp_path / "token")},
                 "static_configs": [{"targets": [target(router_url)]}]},
            ],
        }
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
        port = free_port()
        log = open(tmp_path / "prometheus.log", "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen([binary, f"--config.file={tmp_path / 'prometheus.yml'}",
                                 f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                                 f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=log)
        started.append(proc)
        url = f"http://127.0.0.1:{port}"
        until(lambda: _get(f"{url}/-/ready") is not None, 20, "Prometheus ready", tmp_path)
        return url

    try:
        yield start
    finally:
        for proc in started:
            stop(proc)  # type: ignore[arg-type]


def _get(url: str) -> Any:
    try:
        r = httpx.get(url, timeout=2)
    except httpx.HTTPError:
        return None
    return r.json() if r.status_code == 200 and "json" in r.headers.get("content-type", "") else (
        r.text if r.status_code == 200 else None)


def until(check: Any, timeout: float, what: str, folder: Path | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.25)
    log = (folder / "prometheus.log").read_text()[-2000:] if folder else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{log}")


def query(url: str, promql: str) -> list[dict[str, Any]]:
    found = httpx.get(f"{url}/api/v1/query", params={"query": promql}, timeout=5).json()
    assert found["status"] == "success", found
    return list(found["data"]["result"])


def alerts(url: str, name: str) -> list[dict[str, Any]]:
    found = httpx.get(f"{url}/api/v1/alerts", timeout=5).json()["data"]["alerts"]
    return [a for a in found if a["labels"]["alertname"] == name]


def test_prometheus_scrapes_the_stack_and_fires_when_a_stream_dies(
        cdc_env: Env, upstreams: Any, start_router: Any, prometheus: Any, tmp_path: Path) -> None:  # noqa: F811
    sql(cdc_env.src, "INSERT INTO catalog_category (name) VALUES ('a')")
    run = cdc_env.start()
    exporter, cdc_url = start_exporter(cdc_env)
    try:
        router = start_router(f"""
ledger: ledger.jsonl
access_log: false
upstreams:
  a: {{url: "{upstreams['a'].url}"}}
  b: {{url: "{upstreams['b'].url}"}}
routes:
  - name: products
    match: {{prefix: /}}
    backends: {{a: 90, b: 10}}
""")
        with router.client() as client:
            for _ in range(5):
                assert client.get("/x").status_code == 200
        url = prometheus(cdc_url, router.url)
        # both jobs scraped, the stream seen streaming, and the router's series with roles
        until(lambda: query(url, 'strangler_cdc_stream_state{stream="shop",state="streaming"} == 1'),
              30, "the stream seen streaming", tmp_path)
        until(lambda: query(url, "strangler_requests_total"), 10, "the router scraped", tmp_path)
        step = until(lambda: query(url, "strangler:candidate_weight"), 10, "the recorded step", tmp_path)
        assert (step[0]["metric"]["route"], step[0]["metric"]["backend"], step[0]["value"][1]) == \
            ("products", "b", "10")
        slot = query(url, 'strangler_cdc_slot_wal_status{stream="shop",status="reserved"}')
        assert slot and slot[0]["value"][1] == "1"
        seen = samples(httpx.get(cdc_url).text)  # the exporter's own view of the slot and the run
        slot_name = sql(cdc_env.src, "SELECT slot_name FROM pg_replication_slots "
                                     "WHERE database = current_database()")[0][0]
        assert (value(seen, "strangler_cdc_slot_retained_wal_bytes", stream="shop", slot=slot_name) or 0) > 0
        assert (value(seen, "strangler_cdc_updated_timestamp_seconds", stream="shop", part="both")
                or 0) > time.time() - 30
        time.sleep(2)  # two evaluations with everything healthy
        assert alerts(url, "StranglerCDCStreamDown") == []
        run.kill()  # the fault: the stream's process dies without a clean stop
        run.wait()
        firing = until(lambda: [a for a in alerts(url, "StranglerCDCStreamDown") if a["state"] == "firing"],
                       30, "StranglerCDCStreamDown firing", tmp_path)
        assert firing[0]["labels"]["stream"] == "shop" and firing[0]["labels"]["state"] == "dead"
        # the slot outlives its reader, and the source's writes pile up behind it
        before = value(samples(httpx.get(cdc_url).text), "strangler_cdc_slot_behind_bytes",
                       stream="shop", slot=slot_name) or 0
        sql(cdc_env.src, "INSERT INTO catalog_category (name) SELECT 'x' || g FROM generate_series(1, 500) g")
        assert (value(samples(httpx.get(cdc_url).text), "strangler_cdc_slot_behind_bytes",
                      stream="shop", slot=slot_name) or 0) > before
    finally:
        exporter.terminate()
        exporter.wait(10)
