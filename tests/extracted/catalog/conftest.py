"""Fixtures for the catalog service's tests: its own database and an in-process client."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from extracted.catalog import Settings, create_app
from extracted.kit.db import make_engine
from tests.extracted.catalog.asgi import ASGIClient, asgi_client

SECRET = "test-identity-secret"
ADMIN_TOKEN = "test-admin-token"


def settings_for(url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "database_url": url,
        "identity_secret": SECRET,
        "admin_token": ADMIN_TOKEN,
        "migrate_on_start": True,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def catalog_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'catalog.sqlite3'}"


@pytest.fixture
def catalog_engine(catalog_url: str) -> Iterator[Engine]:
    engine = make_engine(catalog_url)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def client(catalog_url: str, catalog_engine: Engine) -> Iterator[ASGIClient]:
    """The service on a fresh SQLite database, migrated by its own start-up."""
    app = create_app(settings_for(catalog_url), engine=catalog_engine)
    with asgi_client(app) as c:
        yield c
