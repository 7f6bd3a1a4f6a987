"""Settings of the catalog service, read once from the environment and validated.

| env var                      | meaning                                             | default |
|------------------------------|-----------------------------------------------------|---------|
| `CATALOG_DATABASE_URL`       | SQLAlchemy URL of the service's own database        | SQLite file `.strangler/catalog.sqlite3` |
| `STRANGLER_IDENTITY_SECRET`  | HMAC key shared with the router (identity header)   | unset: every staff write is 401 |
| `CATALOG_FAIL_RATE`          | share of `/api/` requests answered 500 on purpose   | `0` |
| `CATALOG_ADMIN_TOKEN`        | bearer token for `/_catalog/` admin endpoints (falls back to `STRANGLER_ADMIN_TOKEN`) | unset: the token file below |
| `CATALOG_ADMIN_TOKEN_FILE`   | a file holding that token, read at each admin request | `.strangler/admin-token` (the one `strangler up` writes); neither: admin endpoints 403 |
| `CATALOG_MIGRATE_ON_START`   | apply Alembic migrations when the app starts        | `1` |
| `CATALOG_PAGE_SIZE`          | products per page (must equal the monolith's)       | `20` |
| `CATALOG_LOG_LEVEL`          | logging level                                       | `INFO` |
| `CATALOG_TRUSTED_PROXIES`    | addresses/CIDRs whose X-Forwarded-* are believed (the router) | `127.0.0.1/32,::1/128` |
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from extracted.kit.errors import ConfigError
from extracted.kit.proxies import parse_networks

TRUSTED_PROXIES_ENV = "CATALOG_TRUSTED_PROXIES"

STATE_DIR = Path(os.environ.get("STRANGLER_STATE_DIR", ".strangler"))
DEFAULT_DATABASE_URL = f"sqlite:///{STATE_DIR / 'catalog.sqlite3'}"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything the service needs to run; invalid values are refused here, not later."""

    database_url: str = DEFAULT_DATABASE_URL
    identity_secret: str | None = None
    fail_rate: float = 0.0
    admin_token: str | None = None
    # The stack's admin token as `strangler up` stores it: read when a request needs it, so the
    # fault drill works under `up` without passing the secret in the environment.
    admin_token_file: Path = STATE_DIR / "admin-token"
    migrate_on_start: bool = True
    page_size: int = 20
    log_level: str = "INFO"
    trusted_proxies: str = "127.0.0.1/32,::1/128"

    def __post_init__(self) -> None:
        if "://" not in self.database_url:
            raise ConfigError(
                f"CATALOG_DATABASE_URL={self.database_url!r} is not a database URL; use e.g. "
                "sqlite:///.strangler/catalog.sqlite3 or postgresql://user@host:5432/catalog"
            )
        if not 0.0 <= self.fail_rate <= 1.0:
            raise ConfigError(
                f"CATALOG_FAIL_RATE={self.fail_rate} is outside 0..1; use 0 for no injected "
                "failures, 1 to fail every /api/ request"
            )
        if self.page_size < 1:
            raise ConfigError(f"CATALOG_PAGE_SIZE={self.page_size} must be 1 or more")
        parse_networks(self.trusted_proxies, name=TRUSTED_PROXIES_ENV)  # refuse a bad list at start, naming the variable
        if self.log_level not in LOG_LEVELS:
            raise ConfigError(
                f"CATALOG_LOG_LEVEL={self.log_level!r} is not one of {', '.join(LOG_LEVELS)}"
            )

    def admin_token_from_file(self) -> str | None:
        try:
            return self.admin_token_file.read_text().strip() or None
        except OSError:
            return None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Settings from environment variables (see the module docstring), then overrides."""
        env = os.environ if env is None else env
        values: dict[str, object] = {}
        if url := env.get("CATALOG_DATABASE_URL"):
            values["database_url"] = url
        values["identity_secret"] = env.get("STRANGLER_IDENTITY_SECRET") or None
        values["admin_token"] = (
            env.get("CATALOG_ADMIN_TOKEN") or env.get("STRANGLER_ADMIN_TOKEN") or None
        )
        if token_file := env.get("CATALOG_ADMIN_TOKEN_FILE"):
            values["admin_token_file"] = Path(token_file)
        values["fail_rate"] = _number(env, "CATALOG_FAIL_RATE", "0", float)
        values["page_size"] = _number(env, "CATALOG_PAGE_SIZE", "20", int)
        values["migrate_on_start"] = _flag(env, "CATALOG_MIGRATE_ON_START", True)
        values["log_level"] = env.get("CATALOG_LOG_LEVEL", "INFO").upper()
        if (proxies := env.get(TRUSTED_PROXIES_ENV)) is not None:
            values["trusted_proxies"] = proxies
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]


def _number(env: Mapping[str, str], name: str, default: str, kind: type) -> object:
    raw = env.get(name, default).strip() or default
    try:
        return kind(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a {kind.__name__}; unset it or give a number") from None


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}={raw!r} is not a flag; use 1/0, true/false, yes/no or on/off")
