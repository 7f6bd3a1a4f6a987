"""Database settings from the environment: ``DATABASE_URL`` selects PostgreSQL, else SQLite.

The SQLite file lives in the git-ignored state folder ``.strangler/`` at the repository
root, or wherever ``MONOLITH_SQLITE_PATH`` says. Parsing is done here (no extra dependency)
and refuses URLs it does not understand, naming the forms it does.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

REPO_ROOT = Path(__file__).resolve().parent.parent
STATE_DIR = REPO_ROOT / ".strangler"
DEFAULT_SQLITE = STATE_DIR / "monolith.sqlite3"


class DatabaseURLError(ValueError):
    """DATABASE_URL is set but cannot be understood."""


def sqlite_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(path),
        # IMMEDIATE: a writer takes the lock at BEGIN, so two writers queue instead of
        # one failing with "database is locked" when it tries to upgrade its lock.
        "OPTIONS": {"timeout": 30, "transaction_mode": "IMMEDIATE"},
    }


def parse_database_url(url: str) -> dict[str, Any]:
    """A Django DATABASES entry for ``postgres://``/``postgresql://`` or ``sqlite:///`` URLs."""
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        path = unquote(parts.path)
        if path in ("", "/"):
            raise DatabaseURLError(f"DATABASE_URL={url!r} names no file; use sqlite:////abs/path.sqlite3")
        # sqlite:///rel.db → "rel.db"; sqlite:////abs.db → "/abs.db"
        return sqlite_config(path[1:] if path.startswith("/") else path)
    if parts.scheme in ("postgres", "postgresql", "pgsql"):
        name = unquote(parts.path.lstrip("/"))
        if not name:
            raise DatabaseURLError(f"DATABASE_URL={url!r} names no database; add /<dbname>")
        options = dict(parse_qsl(parts.query))
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": name,
            "USER": unquote(parts.username or ""),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": parts.hostname or "",
            "PORT": str(parts.port or ""),
            "OPTIONS": options,
            "CONN_MAX_AGE": 60,
            "CONN_HEALTH_CHECKS": True,
        }
    raise DatabaseURLError(
        f"DATABASE_URL scheme {parts.scheme!r} is not supported; "
        "use postgresql://user:pass@host:port/db or sqlite:////path/to/file.sqlite3"
    )


def database_from_env(environ: dict[str, str] | None = None) -> dict[str, Any]:
    env = os.environ if environ is None else environ
    url = env.get("DATABASE_URL", "").strip()
    if url:
        return parse_database_url(url)
    path = env.get("MONOLITH_SQLITE_PATH", "").strip()
    target = Path(path) if path else DEFAULT_SQLITE
    target.parent.mkdir(parents=True, exist_ok=True)
    return sqlite_config(target)
