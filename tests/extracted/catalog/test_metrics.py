"""The catalog's metrics with several workers: a scrape answered by any one sums them all."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from extracted.kit.metrics import MULTIPROC_ENV, Metrics

ROOT = Path(__file__).resolve().parents[3]
WORKER = """
from extracted.kit.metrics import Metrics
m = Metrics("catalog")
for _ in range({n}):
    m.observe("GET", "/api/products/", 200, 0.003)
m.observe("GET", "/api/products/", 500, 0.2)
m.set_fail_rate(0.25)
"""


def test_workers_counts_are_summed_in_one_scrape(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = {MULTIPROC_ENV: str(tmp_path), "PATH": "/usr/bin:/bin"}
    for n in (3, 4):  # two worker processes, each counting into the shared folder
        subprocess.run([sys.executable, "-c", WORKER.format(n=n)], cwd=ROOT, env=env, check=True, timeout=60)
    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path))
    found = {(s.name, tuple(sorted(s.labels.items()))): s.value
             for f in text_string_to_metric_families(Metrics("catalog").render()) for s in f.samples}
    ok = (("method", "GET"), ("route", "/api/products/"), ("status", "200"))
    assert found[("catalog_http_requests_total", ok)] == 7
    assert found[("catalog_http_requests_total", (*ok[:2], ("status", "500")))] == 2
    assert found[("catalog_http_request_duration_seconds_count", ok[:2])] == 9
    assert found[("catalog_http_request_duration_seconds_bucket", (("le", "0.005"), *ok[:2]))] == 7
    assert found[("catalog_fail_rate", ())] == 0.25
