"""Settings from the environment: nonsense is refused with a message that says what to do."""

from __future__ import annotations

import pytest

from extracted.catalog.config import Settings
from extracted.kit.errors import ConfigError


def test_defaults_and_env() -> None:
    settings = Settings.from_env(
        {"CATALOG_DATABASE_URL": "sqlite:///x.db", "CATALOG_FAIL_RATE": "0.25",
         "STRANGLER_IDENTITY_SECRET": "k", "STRANGLER_ADMIN_TOKEN": "t", "CATALOG_MIGRATE_ON_START": "0"}
    )
    assert (settings.database_url, settings.fail_rate, settings.identity_secret) == ("sqlite:///x.db", 0.25, "k")
    assert settings.admin_token == "t" and settings.migrate_on_start is False
    assert Settings.from_env({}).database_url.endswith("catalog.sqlite3")


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"CATALOG_FAIL_RATE": "2"}, "outside 0..1"),
        ({"CATALOG_FAIL_RATE": "lots"}, "not a float"),
        ({"CATALOG_DATABASE_URL": "catalog.db"}, "not a database URL"),
        ({"CATALOG_MIGRATE_ON_START": "perhaps"}, "not a flag"),
        ({"CATALOG_PAGE_SIZE": "0"}, "must be 1 or more"),
        ({"CATALOG_LOG_LEVEL": "LOUD"}, "not one of"),
    ],
)
def test_bad_settings_are_refused_naming_the_variable(env: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle) as err:
        Settings.from_env(env)
    assert "CATALOG_" in str(err.value)
