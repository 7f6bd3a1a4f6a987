"""The stack as data: what `up` runs and what container manifests are generated from."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from stack.model import Process, Stack, StackSettings, build_stack, reference_stack


def test_reference_stack_order_ports_and_readiness() -> None:
    stack = reference_stack()
    assert [p.name for p in stack.processes] == ["monolith", "catalog", "cdc-catalog", "router"]
    assert [t.name for t in stack.setup] == ["monolith-migrate", "monolith-seed"]
    assert stack.router_url == "http://127.0.0.1:8080"
    catalog = stack.process("catalog")
    assert catalog.port == 8001 and catalog.ready_url == "http://127.0.0.1:8001/readyz"
    assert catalog.argv == ("python", "-m", "extracted.catalog", "--host", "127.0.0.1", "--port", "8001")
    router = stack.process("router")
    assert router.argv[:4] == ("python", "-m", "router", "--config")
    assert router.env["STRANGLER_ADMIN_TOKEN"] == "${STRANGLER_ADMIN_TOKEN}"
    assert stack.process("cdc-catalog").env["STRANGLER_STREAMS"] == "streams.yaml"
    doc = stack.describe()
    assert doc["processes"][0]["ready_url"] == "http://127.0.0.1:8000/api/categories/"


def test_real_stack_points_every_part_at_postgresql(tmp_path: Path) -> None:
    s = StackSettings(state=tmp_path, routes=tmp_path / "r.yaml", admin_token="t", identity_secret="s",
                      monolith_database_url="postgresql://u@h/monolith",
                      service_databases={"catalog": "postgresql://u@h/catalog"}, cdc_streams=("catalog",))
    stack = build_stack(s, mode="real")
    assert stack.process("monolith").env["DATABASE_URL"] == "postgresql://u@h/monolith"
    assert "MONOLITH_SQLITE_PATH" not in stack.process("monolith").env
    cdc = stack.process("cdc-catalog").env
    assert cdc["MONOLITH_DATABASE_URL"] == "postgresql://u@h/monolith"
    assert cdc["CATALOG_DATABASE_URL"] == "postgresql://u@h/catalog"
    # PBKDF2 logins on a real database, unless asked (the walkthrough's throwaway demo shop)
    assert "MONOLITH_FAST_PASSWORDS" not in stack.process("monolith").env
    fast = build_stack(replace(s, fast_passwords=True), mode="real")
    assert fast.process("monolith").env["MONOLITH_FAST_PASSWORDS"] == "1"
    assert all(t.env["MONOLITH_FAST_PASSWORDS"] == "1" for t in fast.setup)  # the seed's hashes too


def test_a_data_plane_serves_the_router_s_port_and_leaves_no_admin_api(tmp_path: Path) -> None:
    s = StackSettings(state=tmp_path, routes=tmp_path / "r.yaml", admin_token="t", identity_secret="s",
                      router_port=8080, data_plane="haproxy")
    stack = build_stack(s, mode="embedded")
    assert [p.name for p in stack.processes] == ["monolith", "catalog", "haproxy"]
    plane = stack.process("haproxy")
    assert plane.argv[1:] == ("-m", "dataplane", "haproxy", "--routes", str(tmp_path / "r.yaml"), "--port", "8080",
                              "--folder", str(tmp_path / "dataplane" / "haproxy"))  # the canary reads its log there
    assert plane.role == "dataplane" and plane.ready_url == "http://127.0.0.1:8080/"
    # no router: `strangler shift` finds none in stack.json and edits the routes file it follows
    assert stack.router_url is None and stack.describe()["router_url"] is None
    with pytest.raises(ValueError, match="give one of router, nginx, haproxy"):
        replace(s, data_plane="envoy")


def test_definitions_refuse_nonsense() -> None:
    with pytest.raises(ValueError, match="argv is empty"):
        Process(name="x", argv=())
    with pytest.raises(ValueError, match="a ready_path needs a port"):
        Process(name="x", argv=("true",), ready_path="/")
    with pytest.raises(ValueError, match="uses a port twice"):
        Stack(mode="t", processes=(Process(name="a", argv=("a",), port=1), Process(name="b", argv=("b",), port=1)))
    with pytest.raises(ValueError, match="duplicate names"):
        Stack(mode="t", processes=(Process(name="a", argv=("a",)), Process(name="a", argv=("b",))))
    with pytest.raises(ValueError, match="ports of their own"):
        StackSettings(state=Path("."), routes=Path("r"), admin_token="t", identity_secret="s",
                      router_port=1, monolith_port=1, service_ports={"catalog": 2})
    with pytest.raises(ValueError, match="ports of their own"):
        StackSettings(state=Path("."), routes=Path("r"), admin_token="t", identity_secret="s",
                      router_port=1, monolith_port=3, service_ports={"catalog": 1})
    with pytest.raises(ValueError, match="give values in 0..1"):
        StackSettings(state=Path("."), routes=Path("r"), admin_token="t", identity_secret="s",
                      faults={"catalog": {"fail_rate": 2}})
    with pytest.raises(ValueError, match="no such switch"):
        StackSettings(state=Path("."), routes=Path("r"), admin_token="t", identity_secret="s",
                      faults={"catalog": {"slowness": 0.5}})
    with pytest.raises(ValueError, match="no declared service"):
        StackSettings(state=Path("."), routes=Path("r"), admin_token="t", identity_secret="s",
                      service_ports={"orders": 9})


@pytest.mark.postgres
def test_real_services_fall_back_to_direct_only_when_kafka_is_optional(
        tmp_path: Path, pg_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine without Java: `walkthrough --real` (kafka="optional") says so in one line and
    keeps the streams file's direct transport; `up --real` (required) refuses, saying what to
    install."""
    from stack.errors import StackError
    from stack.realstack import RealServices

    monkeypatch.setenv("STRANGLER_PG_DSN", pg_server.dsn)
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "no-java"))
    monkeypatch.delenv("STRANGLER_KAFKA_BOOTSTRAP", raising=False)
    streams = Path(__file__).resolve().parents[2] / "streams.yaml"
    said: list[str] = []
    services = RealServices(run_dir=tmp_path, progress=said.append)
    try:
        services.start(streams=streams, detach=False, state=tmp_path, kafka="optional")
        assert services.transport == "direct" and services.streams == streams
        assert services.monolith_db.endswith("/monolith") and services.databases["catalog"].endswith("/catalog")
        notes = [line for line in said if line.startswith("note: Kafka cannot start here")]
        assert len(notes) == 1 and "direct transport" in notes[0] and "openjdk-17" in notes[0]
        services.stop()
        with pytest.raises(StackError, match="--real needs Kafka: Java was not found.*apt-get install openjdk-17"):
            RealServices(run_dir=tmp_path).start(streams=streams, detach=False, state=tmp_path)
    finally:
        services.stop()
        import psycopg2

        conn = psycopg2.connect(pg_server.dsn)  # the session's server: leave nothing behind
        conn.autocommit = True
        with conn.cursor() as cur:
            for name in ("monolith", "catalog"):
                cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.close()
