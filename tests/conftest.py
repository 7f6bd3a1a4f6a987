"""Fixtures shared by every suite: real services, started by the project's own code.

A test that needs PostgreSQL (or Kafka) and cannot get it is skipped on a laptop with the
reason, and *fails* in CI (``CI=true``): a missing service is never a silent pass there.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from hypothesis import settings

from devstack import PostgresServer, ServiceUnavailable

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
# Generated examples come from a seed fixed per test: a run never fails by chance.
settings.register_profile("strangler", derandomize=True, database=None)
settings.load_profile("strangler")


def service_missing(what: str, exc: Exception) -> None:
    """Fail in CI, skip elsewhere, always saying what is missing."""
    message = f"{what} is needed but unavailable: {exc}"
    if IN_CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def running_postgres(settings: dict[str, str] | None = None) -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL server (wal_level=logical, plus `settings`) until the generator
    is closed; for fixtures."""
    server = PostgresServer(settings=settings) if settings else PostgresServer()
    try:
        server.start()
    except ServiceUnavailable as exc:
        service_missing("PostgreSQL", exc)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """One real PostgreSQL server (wal_level=logical) for the whole session."""
    yield from running_postgres()


@pytest.fixture
def pg_dsn(pg_server: PostgresServer) -> str:
    """A fresh, empty database on the session's server; its DSN."""
    return pg_server.create_database(f"t_{uuid.uuid4().hex[:12]}")
