"""deploy/healthcheck.py, the images' healthcheck (no curl in slim images): 0 only on 2xx."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

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
