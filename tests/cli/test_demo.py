"""`strangler demo --quick`: the catalog moves out of the monolith under traffic, end to end.

The real walkthrough on the embedded stack (SQLite, trigger CDC, direct transport): its
report must show traffic that never failed, a canary that reached 100%, catalog tables
equal on both sides, and afterwards nothing of it may still run.
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
def test_quick_demo_migrates_the_catalog_with_zero_failures(tmp_path: Path) -> None:
    env = {**os.environ, "STRANGLER_STATE_DIR": str(tmp_path / ".strangler"), "PYTHONPATH": str(REPO)}
    env.pop("STRANGLER_ADMIN_TOKEN", None)
    proc = subprocess.run([sys.executable, "-m", "cli.main", "demo", "--quick", "--json"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=280, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert report["ok"] is True
    assert report["requests"] > 100 and report["failed_requests"] == 0
    assert report["divergent_rows"] == 0 and report["parity"]["equal"] is True
    assert report["canary"]["outcome"] == "promoted"
    assert report["canary"]["weights"] == {"monolith": 0, "catalog": 100}
    assert report["shadow"]["compared"] > 0
    timeline = report["split_over_time"]
    assert timeline[0]["share"].get("catalog", 0) == 0  # it starts on the monolith...
    assert timeline[-1]["share"]["catalog"] == 1.0  # ...and ends on the catalog
    for phase in ("[4/9] CDC", "[5/9] shadow", "[6/9] canary", "[7/9] own", "[8/9] drain"):
        assert phase in proc.stderr  # the progress display says where it is
    # step 4: the writes moved too, without a failed request, and flow back
    own = report["ownership"]
    assert own["outcome"] == "done" and own["hold_s"] >= 0
    assert own["phases"] == ["preflight", "hold", "drain", "guard", "ids", "reverse", "flip", "done"]
    assert own["write_after_flip"]["served_by"] == "catalog"  # and the monolith read it back
    assert report["reverse_divergent_rows"] == 0 and report["reverse_parity"]["equal"] is True
    owners = (tmp_path / ".strangler" / "demo" / "ownership.yaml").read_text()
    assert "owner: catalog" in owners and not (REPO / "ownership.yaml").read_text().count("owner: catalog")
    run_dir = tmp_path / ".strangler" / "demo" / "run"
    assert not list(run_dir.glob("*.json")), "pid files left: the demo did not stop everything"
    ledger = [json.loads(line) for line in (tmp_path / ".strangler" / "demo" / "ledger.jsonl").read_text().splitlines()]
    assert any("canary products → catalog step" in e["reason"] for e in ledger)


def test_demo_refuses_nonsense_options() -> None:
    assert CliRunner().invoke(app, ["demo", "--rate", "fast"]).exit_code == 2
    result = CliRunner().invoke(app, ["demo", "--rate", "0"])
    assert result.exit_code == 2 and "must be > 0" in result.output


def test_the_split_over_time_leaves_out_slices_without_requests() -> None:
    """A busy machine can pause the traffic at the end: an empty slice shows no split (it read
    as "0 % on the catalog" after the promotion)."""
    from cli.demoflow import SplitSampler

    sampler = SplitSampler(api=None)  # type: ignore[arg-type]  # never started: samples given
    sampler.samples = [(1.0, {"monolith": 10}), (3.0, {"monolith": 2, "catalog": 8}),
                       (5.0, {"catalog": 10}), (8.0, {"catalog": 0, "monolith": 0})]
    rows = sampler.timeline(buckets=4)
    assert [r["to_s"] for r in rows] == [2, 4, 6] and all(r["requests"] for r in rows)
    assert rows[-1]["share"] == {"catalog": 1.0}
