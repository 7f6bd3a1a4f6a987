"""Fixtures of the map's tests: the second Django project, probed once per session."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import contextmap

FIXTURES = Path(__file__).resolve().parent / "fixtures"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def minilib_probe() -> dict[str, Any]:
    """The probe's answer for the lending library, with ``--exercise`` (one Django process)."""
    return contextmap.probe("minilib.settings", exercise=True, cwd=FIXTURES)


@pytest.fixture
def cached_probe(minilib_probe: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """build_map answers from the session's probe instead of starting Django again."""
    def probe(settings_module: str, **kwargs: Any) -> dict[str, Any]:
        assert settings_module == "minilib.settings"
        return minilib_probe

    monkeypatch.setattr(contextmap, "probe", probe)
