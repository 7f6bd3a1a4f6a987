"""`strangler walkthrough --auto --quick`: the seven steps of migrations/ under traffic, end to end.

The real walkthrough on the embedded stack (SQLite, trigger CDC, direct transport), and
with `--real` on PostgreSQL, Kafka and Zipkin: every step's checks pass, traffic never
failed, rows are equal in both directions after the drain, and afterwards nothing of it
may still run. (It replaces the old `strangler demo` test: `demo` is now `walkthrough --auto`.)
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from tests.conftest import service_missing

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


@pytest.fixture
def real_parts() -> None:
    """What `--real` starts must start here (else skip, or fail in CI, saying what is
    missing): PostgreSQL's server binaries, and Java 17 with Kafka's and Zipkin's jars."""
    from devstack import ServiceUnavailable
    from devstack.kafka import find_java, kafka_jars
    from devstack.postgres import find_bindir
    from devstack.zipkin import zipkin_jar

    for what, probe in (("PostgreSQL", find_bindir), ("Java 17", find_java), ("Apache Kafka", kafka_jars),
                        ("Zipkin", zipkin_jar)):
        try:
            probe()
        except ServiceUnavailable as exc:
            service_missing(what, exc)


def answers(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.kafka
def test_real_quick_walkthrough_on_postgres_kafka_and_zipkin(tmp_path: Path, real_parts: None) -> None:
    """`--real`: both databases in PostgreSQL (pgoutput CDC both ways), the streams over Kafka,
    step 5's trace read back from Zipkin's API; PostgreSQL, Kafka and Zipkin stopped after."""
    env = {k: v for k, v in os.environ.items()  # the walkthrough's own servers, not a shared one
           if k not in ("STRANGLER_PG_DSN", "STRANGLER_KAFKA_BOOTSTRAP", "STRANGLER_ZIPKIN_URL",
                        "STRANGLER_ADMIN_TOKEN")}
    env.update(STRANGLER_STATE_DIR=str(tmp_path / ".strangler"), PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-m", "cli.main", "walkthrough", "--real", "--auto", "--quick", "--json"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=280, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert report["ok"] is True and report["mode"] == "real" and report["transport"] == "kafka"
    assert [s["step"] for s in report["steps"]] == list(range(1, 8)) and all(s["ok"] for s in report["steps"])
    assert report["failed_requests"] == 0
    for stream in ("catalog", "catalog_reverse"):
        assert report["rows"][stream]["verified"] > 0 and report["rows"][stream]["divergent"] == 0, report["rows"]
    trace = report["trace"]
    assert trace["found"] and trace["store"].startswith("zipkin http://127.0.0.1:") and trace["trace_id"]
    home = tmp_path / ".strangler" / "walkthrough"
    # the streams ran over this run's broker: the copy of streams.yaml they read says so
    assert "kind: kafka" in (home / "streams.real.yaml").read_text()
    assert not list((home / "run").glob("*.json")), "pid files left: the walkthrough did not stop everything"
    ports = {name: int(port) for name, port in
             re.findall(r"(PostgreSQL|Kafka|Zipkin) ready at (?:http://)?127\.0\.0\.1:(\d+)", proc.stderr)}
    assert set(ports) == {"PostgreSQL", "Kafka", "Zipkin"}, proc.stderr[-2000:]
    assert not [name for name, port in ports.items() if answers(port)], "left running after the walkthrough"
    # stopped by the walkthrough itself, not only by their die-with-the-parent watchdogs
    assert [n for n in ("Zipkin", "Kafka", "PostgreSQL") if f"stopped {n}" not in proc.stderr] == []


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
