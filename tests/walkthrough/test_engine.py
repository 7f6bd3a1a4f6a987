"""walkthrough/engine.py: what runs in each mode, and what the report counts as a success."""

from __future__ import annotations

from typing import Any

import pytest

from migrations import load_steps
from walkthrough import engine
from walkthrough.checks import Result
from walkthrough.engine import Report, StepReport, run_step


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    monkeypatch.setattr(engine, "ACTS", {6: lambda w, s: seen.append("act")})
    monkeypatch.setattr(engine, "ALWAYS", {6: lambda w, s: seen.append("drill")})
    monkeypatch.setattr(engine, "CHECKS", {6: lambda w, s: seen.append("check") or [Result("c", True, "fine")]})
    return seen


def test_auto_runs_the_tools_part_the_act_and_the_checks(calls: list[str]) -> None:
    rep = run_step(None, load_steps()[5], lambda: "auto")  # type: ignore[arg-type]
    assert calls == ["drill", "act", "check"] and rep.ok and rep.mode == "auto"


def test_yourself_skips_only_the_act_and_is_still_checked(calls: list[str]) -> None:
    order: list[str] = []

    def decide() -> str:
        order.extend(calls)  # asked after the tool's own part ran (the drill's probe reads meanwhile)
        return "yourself"

    rep = run_step(None, load_steps()[5], decide)  # type: ignore[arg-type]
    assert order == ["drill"] and calls == ["drill", "check"] and rep.ok


def test_quit_and_errors_end_the_step_failed(calls: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    rep = run_step(None, load_steps()[5], lambda: "quit")  # type: ignore[arg-type]
    assert not rep.ok and "stopped by the user" in (rep.error or "")

    def broken(*_: Any) -> None:
        raise KeyError("x")

    monkeypatch.setattr(engine, "ALWAYS", {6: broken})
    rep = run_step(None, load_steps()[5], lambda: "auto")  # type: ignore[arg-type]
    assert not rep.ok and rep.error == "KeyError: 'x'"  # a bug still ends in the report


def test_the_report_is_ok_only_with_every_step_passed_nothing_failed_nothing_divergent() -> None:
    good = [StepReport(n, "s", checks=[Result("c", True, "")]) for n in range(1, 8)]
    assert Report(steps=good, rows={"catalog": {"verified": 9, "divergent": 0}}).ok
    assert not Report(steps=good[:6]).ok  # stopped early
    assert not Report(steps=good, failed=1).ok
    assert not Report(steps=good, rows={"catalog": {"verified": 9, "divergent": 1}}).ok
    bad = good[:6] + [StepReport(7, "s", checks=[Result("c", False, "")])]
    assert not Report(steps=bad).ok
    assert Report(steps=good[:3], wanted=3).ok  # --step 3
    assert not Report(steps=[StepReport(1, "s")], wanted=1).ok  # a step with no check proves nothing
