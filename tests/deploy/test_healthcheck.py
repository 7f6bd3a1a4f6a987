"""deploy/healthcheck.py, the images' healthcheck (no curl in slim images): 0 only on 2xx."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from devstack import free_port
from tests.deploy.conftest import ROOT

SCRIPT = ROOT / "deploy" / "healthcheck.py"


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        code = {"/readyz": 200, "/starting": 503, "/moved": 302}.get(self.path, 404)
        self.send_response(code)
        if code == 302:
            self.send_header("Location", "/starting")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=30)


def test_ready_is_healthy(server: str) -> None:
    assert check(f"{server}/readyz").returncode == 0


@pytest.mark.parametrize("path", ["/starting", "/missing", "/moved"])
def test_non_2xx_is_unhealthy_and_says_why(server: str, path: str) -> None:
    proc = check(f"{server}{path}")
    assert proc.returncode == 1
    assert "unhealthy" in proc.stderr


def test_nothing_listening_is_unhealthy() -> None:
    proc = check(f"http://127.0.0.1:{free_port()}/readyz")
    assert proc.returncode == 1
    assert "unhealthy" in proc.stderr


def test_usage_error() -> None:
    assert check().returncode == 2


# --- deploy/cdc_healthcheck.py: the CDC worker's probe, on the metrics the pipeline writes ---

CDC_SCRIPT = ROOT / "deploy" / "cdc_healthcheck.py"


def cdc_check(state_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "STRANGLER_STATE_DIR": str(state_dir)}
    return subprocess.run([sys.executable, str(CDC_SCRIPT), *args], capture_output=True, text=True,
                          timeout=30, env=env)


def write_metrics(state_dir: Path, **fields: object) -> None:
    from cdc.metrics import StreamMetrics  # the format the pipeline really writes

    metrics = StreamMetrics(stream="catalog")
    metrics.tick()
    for key, value in fields.items():
        setattr(metrics, key, value)
    metrics.save(state_dir / "cdc")


@pytest.mark.parametrize("state", ["starting", "snapshot", "streaming"])
def test_cdc_alive_and_reporting_is_healthy(tmp_path: Path, state: str) -> None:
    write_metrics(tmp_path, state=state)
    assert cdc_check(tmp_path, "catalog").returncode == 0


@pytest.mark.parametrize(
    ("fields", "why"),
    [
        ({"state": "failed", "error": "schema changed"}, "state failed schema changed"),
        ({"state": "stopped"}, "state stopped"),
        ({"state": "streaming", "updated": -600.0}, "no progress report for"),  # 600 s ago
    ],
)
def test_cdc_failed_stopped_or_hung_is_unhealthy(tmp_path: Path, fields: dict[str, object], why: str) -> None:
    if "updated" in fields:
        fields = {**fields, "updated": time.time() + float(fields["updated"])}  # type: ignore[arg-type]
    write_metrics(tmp_path, **fields)
    proc = cdc_check(tmp_path, "catalog")
    assert proc.returncode == 1
    assert why in proc.stderr


def test_cdc_not_started_is_unhealthy(tmp_path: Path) -> None:
    write_metrics(tmp_path, state="streaming")
    proc = cdc_check(tmp_path, "orders")  # another stream: no metrics file
    assert proc.returncode == 1
    assert "no readable metrics" in proc.stderr
