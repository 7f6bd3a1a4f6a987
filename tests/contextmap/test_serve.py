"""`python -m contextmap.serve`: real HTTP requests to a project it serves land in the observe file."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from contextmap import load_observed
from contextmap.analyse import build
from tests.contextmap.conftest import FIXTURES

pytestmark = pytest.mark.slow


def test_served_requests_are_recorded(tmp_path: Path, minilib_probe: dict[str, Any]) -> None:
    env = {**os.environ, "MINILIB_DB": str(tmp_path / "lib.sqlite3"), "PYTHONPATH": os.pathsep.join(
        [str(FIXTURES), str(Path(__file__).resolve().parents[2])])}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    subprocess.run([sys.executable, "-m", "django", "migrate", "--run-syncdb", "-v", "0",
                    "--settings", "minilib.settings"], cwd=FIXTURES, env=env, check=True, timeout=120)
    observe = tmp_path / "observe.jsonl"
    server = subprocess.Popen([sys.executable, "-m", "contextmap.serve", "--settings", "minilib.settings",
                               "--observe", str(observe), "--port", "0"], cwd=FIXTURES, env=env,
                              stderr=subprocess.PIPE, text=True)
    try:
        assert server.stderr is not None
        banner = server.stderr.readline()  # printed once it listens
        port = re.search(r"http://127\.0\.0\.1:(\d+)/", banner)
        assert port, banner
        base = f"http://127.0.0.1:{port.group(1)}"
        assert httpx.get(f"{base}/borrow/7/", timeout=10).json()["shelf"] == "DUN"
        assert httpx.get(f"{base}/books/", timeout=10).status_code == 200
    finally:
        server.terminate()
        server.wait(timeout=10)
    records = load_observed(observe)
    assert [r["endpoint"] for r in records] == ["GET /borrow/<int:book_id>/", "GET /books/"]
    doc = build(minilib_probe["static"], records, None)
    assert [t["contexts"] for t in doc["cross_context_transactions"]] == [["auth", "books", "loans", "members"]]  # the walk-in user too
