"""deploy/prometheus: the rules as Prometheus itself reads them (`promtool check rules`), their
alerts fired and held back by `promtool test rules` on made-up series, and every series they
read one the router, CDC or the catalog exposes."""

from __future__ import annotations

import subprocess

from devstack.apt import require
from tests.deploy.metric_names import RULES, exposed, names_in, recorded, rules

TESTS = RULES.parent / "tests.yml"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require("promtool"), *args], cwd=RULES.parent, capture_output=True,
                          text=True, timeout=60)


def test_promtool_accepts_the_rules() -> None:
    result = promtool("check", "rules", RULES.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout


def test_promtool_fires_each_alert_on_its_series_and_no_other() -> None:
    result = promtool("test", "rules", TESTS.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
    tested = TESTS.read_text()
    alerts = [r["alert"] for r in rules() if "alert" in r]
    assert [a for a in alerts if f"alertname: {a}\n" not in tested] == []  # every alert has a case


def test_the_rules_read_only_series_that_exist() -> None:
    known = exposed() | recorded()
    unknown = {rule.get("record") or rule["alert"]: sorted(names_in(rule["expr"]) - known)
               for rule in rules()}
    assert {k: v for k, v in unknown.items() if v} == {}
