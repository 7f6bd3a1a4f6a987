"""Every exercise's check both ways: not met on its starting state, met once its solution is
applied (`strangler workshop solution N --apply`, through the CLI), plus reset and progress."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cli.main import app
from workshop import checks, exercises, workspace

NUMBERS = [ex.number for ex in exercises.all_exercises()]

# `strangler map`'s document for the shop (the contract of contextmap.build_map), stubbed:
# helper "map" builds the real one
MAP = {"project": "monolith", "contexts": {
    name: {"apps": [name], "tables": [f"{name}_x"]}
    for name in ("catalog", "customers", "orders", "inventory", "payments", "shipping", "notifications")},
    "imports": [], "foreign_keys": [], "coupling": [], "shared_writes": [],
    "cross_context_transactions": [], "signals": [], "tangles": []}


@pytest.fixture(autouse=True)
def _state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRANGLER_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("STRANGLER_OWNERSHIP", raising=False)
    monkeypatch.setattr(checks, "map_document", lambda: MAP)


def run(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def test_there_are_at_least_eight_exercises_each_with_tiered_hints() -> None:
    assert len(NUMBERS) >= 8
    assert all(len(ex.hints) >= 2 for ex in exercises.all_exercises())


@pytest.mark.parametrize("number", NUMBERS)
def test_check_fails_on_the_start_and_passes_on_the_solution(number: int) -> None:
    assert run("workshop", "start", str(number)).exit_code == 0
    before = run("workshop", "check", str(number))
    assert before.exit_code == 3, before.output
    assert "✗" in before.output
    applied = run("workshop", "solution", str(number), "--apply")
    assert applied.exit_code == 0, applied.output
    after = run("workshop", "check", str(number))
    assert after.exit_code == 0, after.output
    assert workspace.progress()[str(number)]["passed"] is True


def test_reset_restores_files_and_databases_to_the_start() -> None:
    ex = exercises.get("cdc-mapping")
    run("workshop", "start", "3")
    run("workshop", "solution", "3", "--apply")
    assert run("workshop", "check", "3").exit_code == 0  # the stream copied rows into catalog.sqlite3
    db = workspace.folder(ex) / "catalog.sqlite3"
    import sqlite3

    assert sqlite3.connect(db).execute("SELECT count(*) FROM price_changes").fetchone()[0] == 4
    assert run("workshop", "reset", "3").exit_code == 0
    assert sqlite3.connect(db).execute("SELECT count(*) FROM price_changes").fetchone()[0] == 0
    assert (workspace.folder(ex) / "streams.yaml").read_text() == (ex.start_dir / "streams.yaml").read_text().replace(
        "{{workspace}}", str(workspace.folder(ex).absolute()))
    assert run("workshop", "check", "3").exit_code == 3
    assert run("reset", "--yes").exit_code == 0
    assert not workspace.root().exists()


def test_map_check_names_the_misplaced_app() -> None:
    run("workshop", "start", "1")
    where = workspace.folder(exercises.get(1))
    (where / "contexts.yaml").write_text("contexts:\n  sales: {apps: [orders, payments]}\n"
                                         "  rest: {apps: [catalog, customers, inventory, shipping, notifications]}\n")
    result = checks.map_contexts(where)
    assert any("sales" in p.where and "orders, payments" in p.what for p in result.problems)


def test_progress_hints_and_wrong_input() -> None:
    assert run("workshop", "check", "2").exit_code == 1  # not started: says how
    assert run("workshop", "start", "nope").exit_code == 2
    assert run("workshop", "hint", "2", "--tier", "9").exit_code == 2
    first = run("workshop", "hint", "2")
    second = run("workshop", "hint", "2")
    assert "hint 1/" in first.output and "hint 2/" in second.output
    listed = run("workshop", "list", "--json")
    assert '"hints_seen": 2' in listed.output


def test_router_exercise_asks_a_live_router_which_upstream_answers() -> None:
    """The real router serves the learner's file in front of stand-ins: a monolith upstream
    pointing at the catalog's address is caught by what answers, not by reading the file."""
    import asyncio

    ex = exercises.get(2)
    where = workspace.start(ex)
    workspace.place(ex, ex.solution_dir)
    assert asyncio.run(checks._ask_live_router(where / "routes.yaml")) == []
    routes = where / "routes.yaml"
    routes.write_text(routes.read_text().replace("127.0.0.1:8000", "127.0.0.1:8001"))
    found = asyncio.run(checks._ask_live_router(routes))
    assert found and "from catalog" in found[0].what
