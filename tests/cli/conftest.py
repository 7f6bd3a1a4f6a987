"""Fixtures of the CLI suite: a private state folder per test, a CliRunner, and a real shop
on loopback (migrated, seeded small, served by uvicorn) for the traffic generator's tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from stack.localshop import LocalShop


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


@pytest.fixture(scope="module")
def live_shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalShop]:
    folder: Path = tmp_path_factory.mktemp("shop")
    shop = LocalShop(sqlite_path=folder / "shop.sqlite3", log_path=folder / "shop.log")
    try:
        shop.prepare(size="small")
        shop.start()
        yield shop
    finally:
        shop.stop()
