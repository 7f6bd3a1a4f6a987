"""docker-compose.yml: valid Compose, converges without races, and is the stack the issue asks for.

Validated here, never run here: these machines have no Docker engine.
"""

from __future__ import annotations

from typing import Any

import pytest

from stack.model import stream_process
from tests.deploy import compose_checks
from tests.deploy.conftest import ROOT


def test_every_variable_has_a_default_so_up_works_on_a_clean_machine(compose_raw: dict[str, Any]) -> None:
    _, problems = compose_checks.interpolate(compose_raw)
    assert problems == []


def test_matches_the_compose_specification_schema(compose: dict[str, Any]) -> None:
    assert compose_checks.schema_errors(compose) == []


def test_semantics_a_schema_cannot_see(compose: dict[str, Any]) -> None:
    """depends_on targets exist and are health-checked, no pass-through env, no port clash."""
    assert compose_checks.semantic_problems(compose, ROOT) == []


def test_shell_overrides_are_honoured(compose_raw: dict[str, Any]) -> None:
    resolved, problems = compose_checks.interpolate(compose_raw, {"STRANGLER_PORT": "9999", "POSTGRES_PASSWORD": "s3cret"})
    assert problems == []
    assert compose_checks.published_ports(resolved["services"]["router"]) == [("0.0.0.0", 9999, "tcp")]
    assert ":s3cret@postgres:5432/" in resolved["services"]["monolith"]["environment"]["DATABASE_URL"]


def test_the_router_is_the_only_published_port(compose: dict[str, Any]) -> None:
    published = {
        name: compose_checks.published_ports(svc)
        for name, svc in compose["services"].items()
        if compose_checks.published_ports(svc)
    }
    assert list(published) == ["router"]
    assert published["router"] == [("0.0.0.0", 8080, "tcp")]


def test_long_running_services_wait_for_healthy_dependencies(compose: dict[str, Any]) -> None:
    services = compose["services"]
    expected = {
        "monolith": {"postgres", "monolith-migrate"},
        "catalog": {"postgres"},
        "cdc-catalog": {"kafka", "monolith", "catalog"},
        "router": {"monolith", "catalog"},
    }
    for name, needs in expected.items():
        assert set(compose_checks.depends_on(services[name])) == needs, name
    # the one-shot migration must finish, not merely start
    assert services["monolith"]["depends_on"]["monolith-migrate"]["condition"] == "service_completed_successfully"
    assert services["monolith-migrate"]["restart"] == "no"


def test_postgres_is_set_up_for_logical_decoding(compose: dict[str, Any]) -> None:
    pg = compose["services"]["postgres"]
    assert pg["image"].startswith("postgres:15.")  # the major version devstack and CI test
    settings = dict(arg.split("=", 1) for arg in pg["command"] if "=" in arg)
    assert settings["wal_level"] == "logical"
    assert int(settings["max_replication_slots"]) >= 4
    assert int(settings["max_wal_senders"]) >= 4
    assert "max_slot_wal_keep_size" in settings  # a stalled slot cannot fill the disk
    # each service owns its database: the init script creates the catalog's
    init = next(v for v in pg["volumes"] if "initdb.d" in v)
    assert "CREATE DATABASE catalog" in (ROOT / init.split(":")[0]).read_text()


def test_kafka_is_the_official_image_in_kraft_mode(compose: dict[str, Any]) -> None:
    from devstack.kafka import KAFKA_VERSION

    kafka = compose["services"]["kafka"]
    assert kafka["image"] == f"apache/kafka:{KAFKA_VERSION}"  # the version tests run against
    env = kafka["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert "ZOOKEEPER" not in " ".join(env)
    assert env["KAFKA_ADVERTISED_LISTENERS"] == "PLAINTEXT://kafka:9092"
    cdc = compose["services"]["cdc-catalog"]["environment"]
    assert cdc["STRANGLER_KAFKA_BOOTSTRAP"] == "kafka:9092"


def test_data_lives_in_named_volumes(compose: dict[str, Any]) -> None:
    assert "pgdata:/var/lib/postgresql/data" in compose["services"]["postgres"]["volumes"]
    assert "kafkadata:/var/lib/kafka/data" in compose["services"]["kafka"]["volumes"]
    assert set(compose["volumes"]) >= {"pgdata", "kafkadata"}


def test_routes_folder_is_mounted_writable_for_the_admin_api(compose: dict[str, Any]) -> None:
    router = compose["services"]["router"]
    assert "./deploy/compose:/etc/strangler" in router["volumes"]  # a folder, rw: atomic rename works
    argv = router["command"]
    assert argv[argv.index("--config") + 1] == "/etc/strangler/routes.yaml"
    assert (ROOT / "deploy" / "compose" / "routes.yaml").is_file()
    assert router["environment"]["STRANGLER_ADMIN_TOKEN"]  # the admin API needs its token


def test_cdc_streams_are_single_consumers(compose: dict[str, Any]) -> None:
    streams = [name for name in compose["services"] if name.startswith("cdc-")]
    assert streams
    for name in streams:
        svc = compose["services"][name]
        assert (svc.get("deploy") or {}).get("replicas", 1) == 1
        assert stream_process(svc["command"][-1]) == name


@pytest.mark.parametrize("profile", ["traffic", "seed"])
def test_optional_profiles_are_off_by_default(compose: dict[str, Any], profile: str) -> None:
    in_profile = [n for n, s in compose["services"].items() if profile in (s.get("profiles") or [])]
    assert in_profile
    for name, svc in compose["services"].items():
        if name not in in_profile:
            assert all(dep not in in_profile for dep in compose_checks.depends_on(svc)), name
