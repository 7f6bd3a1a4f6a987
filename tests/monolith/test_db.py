"""DATABASE_URL parsing: PostgreSQL and SQLite forms, and clear refusals."""

from __future__ import annotations

import pytest

from monolith.db import database_from_env, parse_database_url


def test_database_url_forms() -> None:
    pg = parse_database_url("postgresql://u:p%40ss@db.example:6543/shop?sslmode=require")
    assert (pg["ENGINE"], pg["NAME"], pg["USER"], pg["PASSWORD"], pg["HOST"], pg["PORT"]) == (
        "django.db.backends.postgresql", "shop", "u", "p@ss", "db.example", "6543")
    assert pg["OPTIONS"] == {"sslmode": "require"}
    assert parse_database_url("sqlite:////tmp/x.sqlite3")["NAME"] == "/tmp/x.sqlite3"
    with pytest.raises(ValueError, match="not supported"):
        parse_database_url("mysql://u@h/db")
    with pytest.raises(ValueError, match="names no database"):
        parse_database_url("postgresql://u@h:5432/")


def test_default_is_sqlite_in_the_state_folder(tmp_path) -> None:
    default = database_from_env({})
    assert default["ENGINE"] == "django.db.backends.sqlite3"
    assert default["NAME"].endswith(".strangler/monolith.sqlite3")
    chosen = database_from_env({"MONOLITH_SQLITE_PATH": str(tmp_path / "a" / "b.sqlite3")})
    assert chosen["NAME"] == str(tmp_path / "a" / "b.sqlite3") and (tmp_path / "a").is_dir()
    assert database_from_env({"DATABASE_URL": "postgres://h/db"})["NAME"] == "db"
