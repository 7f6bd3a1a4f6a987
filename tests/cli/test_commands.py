"""Parsing, help and error paths of the `strangler` commands (Typer's runner, no stack)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from cli.doctor import check_disk, check_python, check_speedups, java_major
from cli.main import app


def test_help_lists_every_command(runner: CliRunner) -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for cmd in ("up", "down", "ps", "logs", "ledger", "doctor"):
        assert cmd in result.output


def test_version_is_the_installed_packages(runner: CliRunner) -> None:
    from importlib.metadata import version

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout == f"strangler {version('strangler')}\n"


def test_the_licence_is_an_spdx_expression_so_setuptools_does_not_warn() -> None:
    import tomllib

    project = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())["project"]
    assert project["license"] == "Apache-2.0"  # a table or a License :: classifier is deprecated
    assert not [c for c in project.get("classifiers", []) if c.startswith("License ::")]


def test_unknown_option_is_a_usage_error(runner: CliRunner, state_dir: Path) -> None:
    result = runner.invoke(app, ["ps", "--colour"])
    assert result.exit_code == 2


def test_ps_and_down_with_nothing_running(runner: CliRunner, state_dir: Path) -> None:
    result = runner.invoke(app, ["ps"])
    assert result.exit_code == 0 and "nothing is running" in result.output
    result = runner.invoke(app, ["ps", "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout) == []
    result = runner.invoke(app, ["down"])
    assert result.exit_code == 0 and "nothing was running" in result.output


def test_logs_of_unknown_process_lists_known_ones(runner: CliRunner, state_dir: Path) -> None:
    (state_dir / "logs").mkdir(parents=True)
    (state_dir / "logs" / "router.log").write_text("a\nb\nc\n")
    result = runner.invoke(app, ["logs", "routr"])
    assert result.exit_code == 2
    assert "no log for 'routr'; known: router" in result.output
    result = runner.invoke(app, ["logs", "router", "-n", "2"])
    assert result.exit_code == 0 and result.stdout == "b\nc\n"


def test_up_without_routes_file_says_so(runner: CliRunner, state_dir: Path) -> None:
    result = runner.invoke(app, ["up", "--routes", "nope.yaml", "--no-cdc"])
    assert result.exit_code == 1
    assert "nope.yaml" in result.output or "lacks" in result.output


def test_up_prints_the_stack_engines_error_and_exits_1(runner: CliRunner, state_dir: Path,
                                                        tmp_path: Path) -> None:
    """stack.errors.PortInUse is not a CLIError (the engine imports no cli): guarded still maps it."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        (tmp_path / "routes.yaml").write_text(
            f"upstreams:\n  monolith: {{url: 'http://127.0.0.1:{port}'}}\nroutes: []\n")
        result = runner.invoke(app, ["up", "--no-cdc", "--seed", "none"])
    assert result.exit_code == 1, result.output
    assert f"error: monolith: port {port} on 127.0.0.1 is already in use" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_a_commands_own_stack_error_is_still_a_control_error() -> None:
    """demo and up raise control.errors.StackError and catch ControlError: that keeps working."""
    from control.errors import USER_ERRORS, ControlError, StackError
    from stack import errors
    from stack.errors import PortInUse

    assert issubclass(StackError, ControlError) and issubclass(StackError, errors.StackError)
    assert not issubclass(PortInUse, ControlError)
    assert all(issubclass(e, USER_ERRORS) for e in (StackError, PortInUse, errors.PartMissing))


def test_an_engines_control_error_is_printed_with_its_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    """The engines (control/, handover/) raise ControlErrors, not CLIErrors: `guarded` prints
    them as `error: ...` and exits with their code, as it does a command's own CLIError."""
    from cli.errors import CLIError
    from cli.output import guarded
    from control.errors import ControlError, GateClosed

    @guarded
    def command() -> None:
        raise GateClosed("not raising products toward catalog: its copy is behind")

    with pytest.raises(typer.Exit) as exit_:
        command()
    assert exit_.value.exit_code == 3
    assert "error: not raising products toward catalog" in capsys.readouterr().err
    assert issubclass(CLIError, ControlError)


def test_up_refuses_bad_fail_rate(runner: CliRunner, state_dir: Path) -> None:
    result = runner.invoke(app, ["up", "--fault", "catalog.fail_rate=2"])
    assert result.exit_code == 2 and "0..1" in result.output
    result = runner.invoke(app, ["up", "--fault", "catalog.slowness=1"])
    assert result.exit_code == 2 and "catalog.fail_rate" in result.output  # says which switches exist


def test_ledger_reads_filters_and_prints_json(runner: CliRunner, state_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "routes.yaml").write_text("ledger: changes.jsonl\nupstreams: {}\nroutes: []\n")
    entries = [
        {"time": "2026-11-27T07:00:00Z", "actor": "ana", "route": "products",
         "old": {"monolith": 100, "catalog": 0}, "new": {"monolith": 90, "catalog": 10}, "reason": "canary 1/3"},
        {"time": "2026-11-27T07:01:00Z", "actor": "bo", "route": "orders",
         "old": {"monolith": 100}, "new": {"monolith": 100}, "reason": "noop"},
    ]
    lines = [json.dumps(e) for e in entries] + ['{"time": "torn']
    (tmp_path / "changes.jsonl").write_text("\n".join(lines))
    result = runner.invoke(app, ["ledger", "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout) == entries
    result = runner.invoke(app, ["ledger", "--route", "products"])
    assert result.exit_code == 0
    assert "monolith=100 catalog=0 → monolith=90 catalog=10" in result.stdout
    assert "orders" not in result.stdout
    result = runner.invoke(app, ["ledger", "--route", "nothing"])
    assert result.exit_code == 1 and "no route 'nothing'" in result.output
    assert "the routes are: products, orders" in result.output
    (tmp_path / "routes.yaml").write_text(
        "ledger: changes.jsonl\nupstreams: {}\nroutes: [{name: quiet, match: {prefix: /}}]\n")
    result = runner.invoke(app, ["ledger", "--route", "quiet"])
    assert result.exit_code == 0 and "no changes recorded" in result.output


def test_ledger_follows_the_running_stacks_routes_file(runner: CliRunner, state_dir: Path, tmp_path: Path) -> None:
    """`up --routes elsewhere/routes.yaml`: the ledger is that file's, not ./routes.yaml's."""
    (tmp_path / "routes.yaml").write_text("ledger: here.jsonl\nupstreams: {}\nroutes: []\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "routes.yaml").write_text("ledger: there.jsonl\nupstreams: {}\nroutes: []\n")
    entry = {"time": "2026-11-27T07:00:00Z", "actor": "ana", "route": "products",
             "old": {"monolith": 100}, "new": {"monolith": 90, "catalog": 10}, "reason": "from the stack"}
    (elsewhere / "there.jsonl").write_text(json.dumps(entry) + "\n")
    (state_dir / "run").mkdir(parents=True)
    (state_dir / "run" / "stack.json").write_text(json.dumps({"routes": str(elsewhere / "routes.yaml")}))
    result = runner.invoke(app, ["ledger", "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout) == [entry]
    result = runner.invoke(app, ["ledger", "--json", "--routes", "routes.yaml"])  # asked for: this one
    assert result.exit_code == 0 and json.loads(result.stdout) == []


def test_doctor_reports_a_busy_port_with_its_fix(runner: CliRunner, state_dir: Path, tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        (tmp_path / "routes.yaml").write_text(
            f"upstreams:\n  monolith: {{url: 'http://127.0.0.1:{port}'}}\nroutes: []\n")
        result = runner.invoke(app, ["doctor", "--json"])
    assert result.exit_code == 3
    doc = json.loads(result.stdout)
    assert doc["ok"] is False
    (finding,) = [f for f in doc["findings"] if f["check"] == f"port:{port}"]
    assert finding["status"] == "fail" and "strangler down" in finding["fix"]
    # the same port held by the stack `strangler up` runs from here is no problem to fix
    (state_dir / "run").mkdir(parents=True, exist_ok=True)
    (state_dir / "run" / "stack.json").write_text(json.dumps({"processes": [{"name": "monolith", "port": port}]}))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", port))
        busy.listen()
        doc = json.loads(runner.invoke(app, ["doctor", "--json"]).stdout)
    (finding,) = [f for f in doc["findings"] if f["check"] == f"port:{port}"]
    assert finding["status"] == "ok" and "the running stack's (monolith" in finding["detail"]


def test_doctor_speaks_of_what_a_user_has_not_of_the_projects_history(
        runner: CliRunner, state_dir: Path) -> None:
    result = runner.invoke(app, ["doctor", "--json"])
    details = " ".join(f["detail"] + " " + f["fix"] for f in json.loads(result.stdout)["findings"])
    assert "The legacy shop (monolith/) is installed" in details
    assert "issue" not in details and "branch" not in details
    from stack.model import PARTS

    assert not [label for _, label in PARTS.values() if "issue" in label or "branch" in label]


def test_doctor_units() -> None:
    assert check_python((3, 10)).status == "fail"
    assert check_python((3, 12)).status == "ok"


def test_doctor_says_whether_cdc_runs_its_compiled_loops_and_how_to_get_them() -> None:
    assert check_speedups("").status == "ok"
    slow = check_speedups("cdc._speedups is not built (No module named 'cdc._speedups')")
    assert slow.status == "warn" and "not built" in slow.detail
    assert "gcc python3-dev" in slow.fix and "make demo" in slow.fix
    assert java_major('openjdk version "17.0.9" 2023-10-17') == 17
    assert java_major('java version "1.8.0_392"') == 8
    assert check_disk(Path("/"), minimum=1 << 60).status == "fail"


def test_canary_and_status_need_a_router(runner: CliRunner, state_dir: Path) -> None:
    result = runner.invoke(app, ["canary", "products", "--to", "catalog"])
    assert result.exit_code == 1 and "needs a running router" in result.output
    result = runner.invoke(app, ["status", "--json"])
    assert result.exit_code == 1 and "no router or data plane is running" in " ".join(result.output.split())
    result = runner.invoke(app, ["canary", "products", "--to", "catalog", "--router", "http://127.0.0.1:9"])
    assert result.exit_code == 1 and "no router answers at http://127.0.0.1:9" in result.output


def test_canary_refuses_bad_units_before_touching_anything(runner: CliRunner, state_dir: Path) -> None:
    for args, hint in [(["--steps", "50,10"], "must increase"), (["--interval", "soon"], "use a number"),
                       (["--max-error-rate", "200%"], "between 0% and 100%"),
                       (["--max-p99-ratio", "0.5"], "1.0 or more")]:
        result = runner.invoke(app, ["canary", "products", "--to", "catalog", *args])
        assert result.exit_code == 2, (args, result.output)
        assert hint in result.output


def test_routes_validate_uses_the_router_checker(runner: CliRunner, state_dir: Path, tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("upstreams:\n  monolith: {url: 'http://127.0.0.1:8000'}\n"
                    "routes:\n  - {name: all, match: {prefix: /}, backends: {monolith: 100}}\n")
    result = runner.invoke(app, ["routes", "validate", str(good)])
    assert result.exit_code == 0 and "valid (1 routes, 1 upstreams)" in result.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(good.read_text().replace("monolith: 100}", "monolith: 90}"))
    result = runner.invoke(app, ["routes", "validate", str(bad), "--json"])
    assert result.exit_code == 3
    doc = json.loads(result.stdout)
    assert doc["valid"] is False and "sum to 90" in doc["error"] and doc["line"] == 4


def test_shift_without_router_edits_the_file_and_refuses_nonsense(runner: CliRunner, state_dir: Path, tmp_path: Path) -> None:
    routes = tmp_path / "routes.yaml"
    routes.write_text("# keep me\nupstreams:\n  monolith: {url: 'http://127.0.0.1:8000'}\n"
                      "  catalog: {url: 'http://127.0.0.1:8001'}\nroutes:\n"
                      "  - {name: products, match: {prefix: /api/products}, backends: {monolith: 100, catalog: 0}}\n")
    result = runner.invoke(app, ["shift", "products", "--to", "catalog", "--weight", "10", "--reason", "first users"])
    assert result.exit_code == 0, result.output
    assert "products: monolith=100 catalog=0 → monolith=90 catalog=10" in result.stdout
    assert "# keep me" in routes.read_text() and "catalog: 10" in routes.read_text()
    entries = json.loads(runner.invoke(app, ["ledger", "--json"]).stdout)
    assert entries[-1]["reason"] == "first users" and entries[-1]["route"] == "products"
    before = routes.read_text()
    result = runner.invoke(app, ["shift", "prodcts", "--to", "catalog", "--weight", "10"])
    assert result.exit_code == 1 and "prodcts" in result.output and "products" in result.output
    assert routes.read_text() == before


def test_native_windows_is_told_to_use_wsl_not_shown_an_fcntl_import_error() -> None:
    import subprocess
    import sys

    code = "import sys; sys.platform = 'win32'; import cli.main"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 1
    assert "WSL 2" in proc.stderr and "wsl --install" in proc.stderr
    assert "Traceback" not in proc.stderr and "ModuleNotFoundError" not in proc.stderr
