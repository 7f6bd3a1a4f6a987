"""`strangler demo`: seeds, serves, drives, summarises and stops — all on its own."""

from __future__ import annotations

import json
import re
import socket

from typer.testing import CliRunner

from cli.main import app


def test_demo_runs_end_to_end_and_stops_the_shop(tmp_path) -> None:
    result = CliRunner().invoke(app, ["demo", "--duration", "2", "--rate", "20",
                                      "--state-dir", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["ok"] and summary["requests"] > 20 and summary["errors"] == 0
    assert (tmp_path / "demo-shop.sqlite3").exists()
    # the server is gone: its port no longer answers
    port = int(re.search(r":(\d+)$", summary["base_url"]).group(1))
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0


def test_demo_refuses_an_unknown_size(tmp_path) -> None:
    result = CliRunner().invoke(app, ["demo", "--size", "huge", "--state-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "unknown size 'huge'; choose one of: small, medium, large" in result.stderr
