"""The image's commands, run from the package as the image installs it — without Docker.

The Dockerfile does `pip install .` (not editable) and runs from /app, away from the
source tree. Files a part needs at run time but setuptools leaves out (templates, Alembic
scripts, migrations) would only show up as a crash inside a container. So: build the same
wheel, unpack it into a folder, and run the stack's setup tasks and services from there,
in an empty working folder, on loopback, until each answers its readiness path. Plus:
every command the compose file and the manifests name must exist in the CLI.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack import free_port
from stack.model import Process, StackSettings, build_stack, part_present
from tests.conftest import service_missing
from tests.deploy.conftest import ROOT

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's wheel, unpacked: what `pip install .` puts in the image's venv."""
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)],
        capture_output=True, text=True, timeout=240,
    )
    if proc.returncode != 0:
        service_missing("pip wheel (a build backend from the package index)", RuntimeError(proc.stderr[-2000:]))
    (wheel,) = out.glob("strangler-*.whl")
    target = tmp_path_factory.mktemp("site")
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(target)
    return target


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    """An /app-like working folder: streams.yaml and nothing of the source tree."""
    (tmp_path / "streams.yaml").write_text((ROOT / "streams.yaml").read_text())
    return tmp_path


def run_env(site: Path, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STRANGLER_", "MONOLITH_", "CATALOG_"))}
    env.update(extra)
    env["PYTHONPATH"] = str(site)  # ahead of the venv's editable install of the source tree
    return env


NOT_RUNTIME = (".pyc", ".md")  # documentation stays in the repository


def test_wheel_ships_every_runtime_file(site: Path) -> None:
    sources = [
        p.relative_to(ROOT)
        for pattern in ("monolith/**/*", "extracted/**/*", "router/**/*", "cdc/**/*", "cli/**/*")
        for p in ROOT.glob(pattern)
        if p.is_file() and "__pycache__" not in p.parts and p.suffix not in NOT_RUNTIME
    ]
    missing = [str(p) for p in sources if not (site / p).exists()]
    assert missing == [], "setuptools leaves these out of the image; add them to package-data"


def test_installed_package_is_what_runs(site: Path) -> None:
    code = "import monolith, cli; print(monolith.__file__); print(cli.__file__)"
    proc = subprocess.run([sys.executable, "-c", code], env=run_env(site, {}), cwd=site.parent,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert all(line.startswith(str(site)) for line in proc.stdout.split()), proc.stdout


def wait_ready(proc: subprocess.Popen[bytes], p: Process, deadline_s: float = 45.0) -> None:
    assert p.ready_url is not None
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if proc.poll() is not None:
            pytest.fail(f"{p.name} exited with {proc.returncode} before it was ready")
        try:
            with urllib.request.urlopen(p.ready_url, timeout=2) as response:
                if response.status < 500:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    pytest.fail(f"{p.name} was not ready at {p.ready_url} within {deadline_s}s")


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    try:
        yield procs
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_stack_runs_from_the_installed_package(site: Path, app_dir: Path, started: list[Any]) -> None:
    """Setup tasks, then each service, with exactly the argv and env of `strangler up`."""
    absent = [part for part in ("monolith", "catalog", "router") if not part_present(part)]
    routes = ROOT / "routes.yaml"
    ports = {"router": free_port(), "monolith": free_port(), "catalog": free_port()}
    stack = build_stack(
        StackSettings(
            state=app_dir / ".strangler", routes=routes, python=sys.executable,
            router_port=ports["router"], monolith_port=ports["monolith"], service_ports={"catalog": ports["catalog"]},
            admin_token="test-admin-token", identity_secret="test-identity-secret", seed="small",
        ),
        mode="embedded",
    )
    (app_dir / ".strangler").mkdir()
    for task in stack.setup:
        proc = subprocess.run(list(task.argv), env=run_env(site, dict(task.env)), cwd=app_dir,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, f"{task.name}: {proc.stderr[-2000:]}"
    services = [p for p in stack.processes if p.role != "stream" and p.name not in absent]
    for p in services:  # CDC needs its trigger setup; its command is checked below
        started.append(subprocess.Popen(list(p.argv), env=run_env(site, dict(p.env)), cwd=app_dir,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    for proc, p in zip(started, services, strict=True):
        wait_ready(proc, p)
    if absent:
        service_missing(f"the {', '.join(absent)} part(s) (merge the branch)", RuntimeError("not in this checkout"))


def cli_commands(compose: dict[str, Any], manifests: list[tuple[str, dict[str, Any]]]) -> set[tuple[str, ...]]:
    """Every `python -m cli.main <group> <command>` the deployment files run, as words."""
    argvs: list[list[str]] = []
    for svc in compose["services"].values():
        argvs.append(list(svc.get("command") or []))
        argvs.append(list((svc.get("healthcheck") or {}).get("test") or [])[1:])
    for _, res in manifests:
        spec = ((res.get("spec") or {}).get("template") or {}).get("spec") or {}
        for c in spec.get("containers", []) + spec.get("initContainers", []):
            argvs.append(list(c.get("command") or []))
            for probe in ("livenessProbe", "readinessProbe"):
                argvs.append(list(((c.get(probe) or {}).get("exec") or {}).get("command") or []))
    out = set()
    for argv in argvs:
        if argv[:3] == ["python", "-m", "cli.main"]:
            words: list[str] = []
            for word in argv[3:5]:  # a group and its command, or a command and its argument
                if word.startswith("-"):
                    break
                words.append(word)
            out.add(tuple(words))
    return out


def test_every_cli_command_the_deployment_runs_exists(compose: dict[str, Any], manifests: list[tuple[str, dict[str, Any]]]) -> None:
    from typer.testing import CliRunner

    from cli.main import app

    runner = CliRunner()
    missing = []
    for words in sorted(cli_commands(compose, manifests)):
        if runner.invoke(app, [*words, "--help"]).exit_code != 0:  # --help is eager: no side effect
            missing.append(" ".join(words))
    if missing:
        service_missing(
            "CLI commands named by docker-compose.yml / deploy/k8s",
            RuntimeError(f"`strangler {' | '.join(missing)}` do not exist yet (branches cdc, cli)"),
        )
