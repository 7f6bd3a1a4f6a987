"""`strangler walkthrough --auto --quick`: the seven steps of migrations/ under traffic, end to end.

The real walkthrough on the embedded stack (SQLite, trigger CDC, direct transport): every
step's checks pass, traffic never failed, rows are equal in both directions after the
drain, and afterwards nothing of it may still run. (It replaces the old `strangler demo`
test: `demo` is now `walkthrough --auto`.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_quick_walkthrough_runs_and_checks_all_seven_steps(tmp_path: Path) -> None:
    env = {**os.environ, "STRANGLER_STATE_DIR": str(tmp_path / ".strangler"), "PYTHONPATH": str(REPO)}
    env.pop("STRANGLER_ADMIN_TOKEN", None)
    proc = subprocess.run([sys.executable, "-m", "cli.main", "walkthrough", "--auto", "--quick", "--json"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=280, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert report["ok"] is True
    assert [s["step"] for s in report["steps"]] == list(range(1, 8)) and all(s["ok"] for s in report["steps"])
    names = {c["name"] for s in report["steps"] for c in s["checks"]}
    assert {"golden_path_identical", "contract_tests_live", "write_owner", "trace_crosses", "canary_rolled_back",
            "canary_promoted", "zero_traffic_window", "monolith_writes_retired", "import_contract",
            "route_cleaned"} <= names
    assert report["requests"] > 100 and report["failed_requests"] == 0
    assert report["rows"]["catalog"]["divergent"] == 0 and report["rows"]["catalog"]["verified"] > 0
    assert report["rows"]["catalog_reverse"]["divergent"] == 0
    assert report["drill"]["outcome"] == "rolled_back" and report["canary"]["outcome"] == "promoted"
    timeline = report["split_over_time"]
    assert timeline[0]["share"].get("catalog", 0) == 0 and timeline[-1]["share"]["catalog"] == 1.0
    assert set(report["cdc_lag_peak_ms"]) == {"catalog", "catalog_reverse"}
    for phase in ("[1/7] Map the boundaries", "[4/7] Copy, stream", "[7/7] Retire"):
        assert phase in proc.stderr  # the progress display says where it is
    home = tmp_path / ".strangler" / "walkthrough"
    assert "owner: catalog" in (home / "ownership.yaml").read_text()
    assert not (REPO / "ownership.yaml").read_text().count("owner: catalog")  # the repository's file untouched
    assert not list((home / "run").glob("*.json")), "pid files left: the walkthrough did not stop everything"
    ledger = [json.loads(line) for line in (home / "ledger.jsonl").read_text().splitlines()]
    assert any("canary rollback" in e["reason"] and e["route"] == "products-drill" for e in ledger)


def test_walkthrough_and_demo_refuse_nonsense_options() -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["demo", "--rate", "fast"]).exit_code == 2
    result = runner.invoke(app, ["walkthrough", "--auto", "--rate", "0"])
    assert result.exit_code == 2 and "must be > 0" in result.output
    assert runner.invoke(app, ["walkthrough", "--step", "8"]).exit_code == 2
    # no terminal to ask on: say to add --auto rather than hang
    result = runner.invoke(app, ["walkthrough"])
    assert result.exit_code == 1 and "add --auto" in result.output


def test_the_split_over_time_leaves_out_slices_without_requests() -> None:
    """A busy machine can pause the traffic at the end: an empty slice shows no split (it read
    as "0 % on the catalog" after the promotion)."""
    from walkthrough.flow import SplitSampler

    sampler = SplitSampler(api=None)  # type: ignore[arg-type]  # never started: samples given
    sampler.samples = [(1.0, {"monolith": 10}), (3.0, {"monolith": 2, "catalog": 8}),
                       (5.0, {"catalog": 10}), (8.0, {"catalog": 0, "monolith": 0})]
    rows = sampler.timeline(buckets=4)
    assert [r["to_s"] for r in rows] == [2, 4, 6] and all(r["requests"] for r in rows)
    assert rows[-1]["share"] == {"catalog": 1.0}
