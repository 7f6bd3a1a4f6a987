"""Services as data (stack/services.py): every extracted/<name>/service.yaml becomes a process
of the stack; a second service is a folder and a declaration, nothing in cli/ changes."""

from __future__ import annotations

from pathlib import Path

import pytest

from stack.model import StackSettings, build_stack, reference_stack
from stack.services import ServiceDeclarationError, declared, discover, parse_faults

REPO = Path(__file__).resolve().parents[2]

ORDERS = """
name: orders
about: the orders service (extracted/orders/)
module: extracted.orders
port: 8003
ready: /healthz
database: {env: ORDERS_DATABASE_URL, name: orders}
faults: {fail_rate: ORDERS_FAIL_RATE, decline_rate: ORDERS_DECLINE_RATE}
"""


def declare(root: Path, name: str, text: str) -> Path:
    (root / name).mkdir(parents=True, exist_ok=True)
    path = root / name / "service.yaml"
    path.write_text(text)
    return path


def test_the_catalog_is_declared_in_its_folder() -> None:
    (catalog,) = declared()
    assert (catalog.name, catalog.module, catalog.port, catalog.ready) == ("catalog", "extracted.catalog", 8001, "/readyz")
    assert (catalog.database_env, catalog.database) == ("CATALOG_DATABASE_URL", "catalog")
    assert catalog.faults == {"fail_rate": "CATALOG_FAIL_RATE"}
    # the manifests' reference stack runs it from that declaration
    proc = reference_stack().process("catalog")
    assert proc.argv == ("python", "-m", "extracted.catalog", "--host", "127.0.0.1", "--port", "8001")
    assert proc.env["CATALOG_TRUSTED_PROXIES"] == "127.0.0.1/32,::1/128"


def test_a_second_service_is_its_folder_and_its_declaration(tmp_path: Path) -> None:
    root = tmp_path / "extracted"
    declare(root, "catalog", (REPO / "extracted" / "catalog" / "service.yaml").read_text())
    declare(root, "orders", ORDERS)
    services = discover(root)
    settings = StackSettings(state=tmp_path, routes=tmp_path / "routes.yaml", admin_token="t", identity_secret="s",
                             services=services, service_ports={"orders": 9003},
                             service_databases={"orders": "postgresql://u@h/orders"},
                             faults={"orders": {"decline_rate": 0.25}}, cdc_streams=("orders",))
    stack = build_stack(settings, mode="real")
    assert [p.name for p in stack.processes] == ["monolith", "catalog", "orders", "cdc-orders", "router"]
    orders = stack.process("orders")
    assert orders.argv[-5:] == ("extracted.orders", "--host", "127.0.0.1", "--port", "9003")
    assert orders.ready_url == "http://127.0.0.1:9003/healthz"
    assert orders.env["ORDERS_DATABASE_URL"] == "postgresql://u@h/orders"
    assert (orders.env["ORDERS_DECLINE_RATE"], orders.env["ORDERS_FAIL_RATE"]) == ("0.25", "0.0")
    assert "ORDERS_TRUSTED_PROXIES" not in orders.env  # none declared: none set
    # the catalog keeps its declared port and its SQLite file; the streams see both databases
    assert stack.process("catalog").port == 8001
    cdc = stack.process("cdc-orders").env
    assert cdc["ORDERS_DATABASE_URL"] == "postgresql://u@h/orders"
    assert cdc["CATALOG_DATABASE_URL"] == f"sqlite:///{tmp_path / 'catalog.sqlite3'}"


@pytest.mark.parametrize(("text", "says"), [
    (ORDERS.replace("port: 8003\n", ""), "`port` must be an integer"),
    (ORDERS.replace("name: orders\n", "name: order\n"), "differs from its folder"),
    (ORDERS.replace("ready: /healthz", "ready: healthz"), "starting with /"),
    (ORDERS.replace("name: orders}", "}"), "`database.name`"),
    (ORDERS.replace("port: 8003", "port: 70000"), "not a TCP port"),
    ("name: [", "cannot read it"),
])
def test_a_declaration_that_cannot_be_used_names_its_file_and_field(tmp_path: Path, text: str, says: str) -> None:
    path = declare(tmp_path, "orders", text)
    with pytest.raises(ServiceDeclarationError, match=says) as raised:
        discover(tmp_path)
    assert str(path) in str(raised.value)


def test_two_services_on_one_port_or_database_refuse(tmp_path: Path) -> None:
    declare(tmp_path, "orders", ORDERS)
    declare(tmp_path, "payments", ORDERS.replace("name: orders\n", "name: payments\n")
            .replace("ORDERS_DATABASE_URL", "PAYMENTS_DATABASE_URL").replace("name: orders}", "name: payments}"))
    with pytest.raises(ServiceDeclarationError, match="both declare port 8003"):
        discover(tmp_path)


def test_fault_switches_are_named_and_bounded() -> None:
    services = declared()
    assert parse_faults(["catalog.fail_rate=0.5"], services) == {"catalog": {"fail_rate": 0.5}}
    for wrong, says in (("catalog.fail_rate=2", "0..1"), ("catalog.fail_rate=lots", "0..1"),
                        ("orders.fail_rate=0.1", "catalog.fail_rate"), ("catalog=0.1", "SERVICE.SWITCH=VALUE")):
        with pytest.raises(ServiceDeclarationError, match=says):
            parse_faults([wrong], services)


def test_cli_names_no_particular_service() -> None:
    """Adding a service never means editing cli/: only the --fault help's example names one."""
    named = [f"{p.relative_to(REPO)}:{n}" for p in sorted((REPO / "cli").glob("*.py"))
             for n, line in enumerate(p.read_text().splitlines(), 1)
             if "catalog" in line.lower() and "e.g. catalog.fail_rate" not in line]
    assert named == []
