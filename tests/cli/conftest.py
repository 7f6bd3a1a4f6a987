"""A real shop on loopback for the CLI's tests: migrated, seeded small, served by uvicorn."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.localshop import LocalShop


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
