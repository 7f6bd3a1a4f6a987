"""Fixtures of the CLI suite: a private state folder per test, a CliRunner."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner


@pytest.fixture
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A throwaway `.strangler/`; the test runs from its parent folder."""
    folder = tmp_path / ".strangler"
    monkeypatch.setenv("STRANGLER_STATE_DIR", str(folder))
    monkeypatch.delenv("STRANGLER_ADMIN_TOKEN", raising=False)
    monkeypatch.delenv("STRANGLER_ROUTER_URL", raising=False)
    monkeypatch.setenv("COLUMNS", "200")  # Rich tables unwrapped in assertions
    monkeypatch.chdir(tmp_path)
    yield folder


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()
