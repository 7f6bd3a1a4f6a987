"""Parsing, help and error paths of the `strangler` commands (Typer's runner, no stack)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

from typer.testing import CliRunner

from cli.doctor import check_disk, check_python, java_major
from cli.main import app


def test_help_lists_every_command(runner: CliRunner) -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for cmd in ("up", "down", "ps", "logs", "ledger", "doctor"):
        assert cmd in result.output


def test_unknown_option_is_a_usage_error(runner: CliRunner, state_dir: Path) -> None:
    result = runner.invoke(app, ["ps", "--colour"])
    assert result.exit_code == 2


def test_ps_and_down_with_nothing_running(runner: CliRunner, state_dir: Path) -> None:
    result = runner.invoke(app, ["ps"])
    assert result.exit_code == 0 and "nothing is running" in result.output
    result = runner.invoke(app, ["ps", "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout) == []
    result = runner.invoke(app, ["down"])
    assert result.exit_code == 0 and "nothing was running" in result.output


def test_logs_of_unknown_process_lists_known_ones(runner: CliRunner, state_dir: Path) -> None:
    (state_dir / "logs").mkdir(parents=True)
    (state_dir / "logs" / "router.log").write_text("a\nb\nc\n")
    result = runner.invoke(app, ["logs", "routr"])
    assert result.exit_code == 2
    assert "no log for 'routr'; known: router" in result.output
    result = runner.invoke(app, ["logs", "router", "-n", "2"])
    assert result.exit_code == 0 and result.stdout == "b\nc\n"


def test_up_without_routes_file_says_so(runner: CliRunner, state_dir: Path) -> None:
    result = runner.invoke(app, ["up", "--routes", "nope.yaml", "--no-cdc"])
    assert result.exit_code == 1
    assert "nope.yaml" in result.output or "lacks" in result.output


def test_up_refuses_bad_fail_rate(runner: CliRunner, state_dir: Path) -> None:
    result = runner.invoke(app, ["up", "--catalog-fail-rate", "2"])
    assert result.exit_code == 2


def test_ledger_reads_filters_and_prints_json(runner: CliRunner, state_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "routes.yaml").write_text("ledger: changes.jsonl\nupstreams: {}\nroutes: []\n")
    entries = [
        {"time": "2026-11-27T07:00:00Z", "actor": "ana", "route": "products",
         "old": {"monolith": 100, "catalog": 0}, "new": {"monolith": 90, "catalog": 10}, "reason": "canary 1/3"},
        {"time": "2026-11-27T07:01:00Z", "actor": "bo", "route": "orders",
         "old": {"monolith": 100}, "new": {"monolith": 100}, "reason": "noop"},
    ]
    lines = [json.dumps(e) for e in entries] + ['{"time": "torn']
    (tmp_path / "changes.jsonl").write_text("\n".join(lines))
    result = runner.invoke(app, ["ledger", "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout) == entries
    result = runner.invoke(app, ["ledger", "--route", "products"])
    assert result.exit_code == 0
    assert "monolith=100 catalog=0 → monolith=90 catalog=10" in result.stdout
    assert "orders" not in result.stdout
    result = runner.invoke(app, ["ledger", "--route", "nothing"])
    assert result.exit_code == 0 and "no changes recorded" in result.output


def test_doctor_reports_a_busy_port_with_its_fix(runner: CliRunner, state_dir: Path, tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        (tmp_path / "routes.yaml").write_text(
            f"upstreams:\n  monolith: {{url: 'http://127.0.0.1:{port}'}}\nroutes: []\n")
        result = runner.invoke(app, ["doctor", "--json"])
    assert result.exit_code == 3
    doc = json.loads(result.stdout)
    assert doc["ok"] is False
    (finding,) = [f for f in doc["findings"] if f["check"] == f"port:{port}"]
    assert finding["status"] == "fail" and "strangler down" in finding["fix"]


def test_doctor_units() -> None:
    assert check_python((3, 10)).status == "fail"
    assert check_python((3, 12)).status == "ok"
    assert java_major('openjdk version "17.0.9" 2023-10-17') == 17
    assert java_major('java version "1.8.0_392"') == 8
    assert check_disk(Path("/"), minimum=1 << 60).status == "fail"
