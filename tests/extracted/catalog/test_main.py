"""`python -m extracted.catalog`: the production-style command, run as a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from devstack import free_port
from extracted.catalog import migrations

REPO = Path(__file__).resolve().parents[3]


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "CATALOG_DATABASE_URL": f"sqlite:///{tmp_path / 'catalog.sqlite3'}",
        "STRANGLER_IDENTITY_SECRET": "s",
        **extra,
    }


def test_serves_with_uvicorn_migrates_at_start_and_logs_json(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "extracted.catalog", "--host", "127.0.0.1", "--port", str(port)],
        env=_env(tmp_path), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 60
        ready = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        assert ready is not None and ready.status_code == 200, proc.stderr.read() if proc.stderr else ""
        assert ready.json()["revision"] == migrations.head_revision()
        answer = httpx.get(f"http://127.0.0.1:{port}/api/products/", headers={"X-Request-ID": "abc-123"})
        assert answer.status_code == 200
        assert answer.json() == {"count": 0, "next": None, "previous": None, "results": []}
        assert "server" not in answer.headers  # no version banner
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=15)
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    # A clean shutdown on SIGTERM (uvicorn re-raises the signal once it has finished).
    assert proc.returncode in (0, -15)
    assert any(line["msg"].startswith("Finished server process") for line in lines), stderr[-2000:]
    access = [line for line in lines if line.get("logger") == "extracted.catalog.access"]
    assert any(line["request_id"] == "abc-123" and line["status"] == 200 for line in access)
    assert len(lines) == len(stderr.splitlines()), "every log line is JSON"


def test_migrate_only_applies_and_prints_the_revision(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "extracted.catalog", "--migrate-only"],
        env=_env(tmp_path), cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == migrations.head_revision()


def test_bad_settings_exit_2_with_the_reason(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "extracted.catalog", "--port", "1"],
        env=_env(tmp_path, CATALOG_FAIL_RATE="3"), cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 2
    assert "CATALOG_FAIL_RATE=3.0 is outside 0..1" in done.stderr
