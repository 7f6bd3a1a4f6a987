"""`strangler map` as a user types it, on the lending-library fixture (no run-time data: fast)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from contextmap import render
from devstack.apt import require
from tests.contextmap.conftest import FIXTURES


@pytest.fixture
def in_fixtures(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(FIXTURES)
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.delenv("DJANGO_SETTINGS_MODULE", raising=False)


def test_json_is_one_document_with_the_mermaid(in_fixtures: None, cached_probe: None, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(render, "dot_binary", lambda: None)
    result = CliRunner().invoke(app, ["map", "--settings", "minilib.settings", "--json",
                                      "--mermaid", str(tmp_path / "map.mmd"), "--svg", str(tmp_path / "map.svg")])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["project"] == "minilib" and "books" in doc["contexts"]
    diagram = (tmp_path / "map.mmd").read_text()
    assert diagram.startswith("flowchart LR") and "c_books ---|" in diagram
    assert doc["mermaid"] == diagram
    assert not (tmp_path / "map.svg").exists()
    assert "Graphviz's `dot` is not installed" in result.stderr
    assert "no run-time data: add --exercise" in result.stderr
    assert doc["observed_from"] == ""


def test_terminal_tables_and_the_diagram_on_stdout(in_fixtures: None, cached_probe: None) -> None:
    result = CliRunner().invoke(app, ["map", "--settings", "minilib.settings"])
    assert result.exit_code == 0, result.output
    assert "contexts of minilib" in result.stdout and "coupling" in result.stdout
    assert "import-cycle" in result.stdout and "minilib/books/models.py:10" in result.stdout
    assert "```mermaid\nflowchart LR" in result.stdout


def test_the_svg_comes_from_dot(in_fixtures: None, tmp_path: Path) -> None:
    doc = {"project": "p", "contexts": {"a": {"apps": ["a"], "tables": ["t"]},
                                        "b": {"apps": ["b"], "tables": []}},
           "coupling": [{"a": "a", "b": "b", "score": 3.0, "parts": {"foreign_keys": 1}}]}
    assert 'c_a -- c_b [label="3 (fk:1)"' in render.dot(doc)
    require("dot")  # fails saying which package to install (devstack/apt.py)
    assert render.svg(doc, tmp_path / "m.svg") is None
    svg = (tmp_path / "m.svg").read_text()
    assert "<svg" in svg and "fk:1" in svg


@pytest.mark.parametrize(("args", "code", "message"), [
    (["--settings", "nowhere.settings"], 1, "does not import"),
    (["--settings", "minilib.settings", "--observe", "missing.jsonl"], 1, "no such observe file"),
    (["--settings", "minilib.settings", "--observe", "x", "--exercise"], 2, "not both"),
])
def test_wrong_input_says_what_to_do(in_fixtures: None, args: list[str], code: int, message: str) -> None:
    result = CliRunner().invoke(app, ["map", *args])
    assert result.exit_code == code, result.output
    assert message in result.output
