"""`strangler doctor`: pre-flight for a workshop laptop, each finding with its fix.

Checks what `strangler up` and the demo need (Python, the installed parts, free ports,
disk) and what `up --real` and the Kafka exercises need (PostgreSQL server binaries,
Java 17, Maven), and whether CDC runs its compiled per-row loops. Exit 0 when everything the
embedded stack needs is there, 3 otherwise; missing `--real` tools and a CDC without its
compiled loops are warnings.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cli.output import guarded, out, print_json
from cli.up import DEFAULT_PORTS, upstream_ports
from stack import state
from stack.model import all_parts, part_present
from stack.services import ServiceDeclarationError, declared
from stack.supervisor import port_free

app = typer.Typer()

MIN_FREE_DISK = 1 << 30  # the demo's SQLite files and logs stay well under this


@dataclass(frozen=True)
class Finding:
    check: str
    status: str  # ok | warn | fail
    detail: str
    fix: str = ""


def check_python(version: tuple[int, int] = sys.version_info[:2]) -> Finding:
    text = f"{version[0]}.{version[1]}"
    if version >= (3, 11):
        return Finding("python", "ok", f"Python {text}")
    return Finding("python", "fail", f"Python {text} is too old",
                   "install Python 3.11 or newer and run `make demo PYTHON=python3.11`")


def check_parts() -> list[Finding]:
    found = []
    try:
        parts = all_parts()
    except ServiceDeclarationError as exc:
        return [Finding("part:services", "fail", str(exc), "fix the service.yaml it names")]
    for part, (_module, label) in parts.items():
        if part_present(part):
            found.append(Finding(f"part:{part}", "ok", f"{label[0].upper()}{label[1:]} is installed"))
        else:
            status = "warn" if part == "kafka" else "fail"
            found.append(Finding(f"part:{part}", status, f"{label} is missing from this checkout",
                                 "update the checkout (`git pull`) and reinstall (`make .venv/.installed`)"))
    return found


def stack_ports() -> dict[int, str]:
    """Ports the stack `strangler up` runs from this state folder listens on (port → process)."""
    doc = state.running_stack() or {}
    return {int(p["port"]): str(p.get("name")) for p in doc.get("processes") or []
            if isinstance(p, dict) and isinstance(p.get("port"), int)}


def check_ports(ports: dict[str, int], ours: dict[int, str] | None = None) -> list[Finding]:
    found = []
    ours = stack_ports() if ours is None else ours
    for name, port in sorted(ports.items(), key=lambda kv: kv[1]):
        if port_free(port):
            found.append(Finding(f"port:{port}", "ok", f"{name} port {port} is free"))
        elif port in ours:  # the running stack's own: nothing to fix unless another is to start
            found.append(Finding(f"port:{port}", "ok", f"{name} port {port} is the running stack's "
                                 f"({ours[port]}: `strangler ps`); `strangler down` frees it"))
        else:
            found.append(Finding(f"port:{port}", "fail", f"{name} port {port} is in use",
                                 f"stop what listens there (`ss -ltnp 'sport = :{port}'`), "
                                 "run `strangler down`, or change the port in routes.yaml / --port"))
    return found


def check_disk(path: Path, minimum: int = MIN_FREE_DISK) -> Finding:
    free = shutil.disk_usage(path).free
    gib = free / (1 << 30)
    if free >= minimum:
        return Finding("disk", "ok", f"{gib:.1f} GiB free in {path}")
    return Finding("disk", "fail", f"only {gib:.2f} GiB free in {path}",
                   f"free at least {minimum / (1 << 30):.0f} GiB (logs and SQLite files live there)")


def check_postgres() -> Finding:
    from devstack import ServiceUnavailable
    from devstack.postgres import find_bindir

    if os.environ.get("STRANGLER_PG_DSN"):
        return Finding("postgresql", "ok", "STRANGLER_PG_DSN points at an existing server")
    try:
        folder = find_bindir()
    except ServiceUnavailable:
        return Finding("postgresql", "warn", "PostgreSQL server binaries (initdb, pg_ctl) not found (needed by --real)",
                       "Debian/Ubuntu: `apt-get install postgresql`; macOS: `brew install postgresql@15`; "
                       "or set STRANGLER_PG_DSN")
    return Finding("postgresql", "ok", f"PostgreSQL server binaries in {folder}")


def java_major(text: str) -> int | None:
    """The major version in `java -version` output ('17.0.9', '1.8.0_392' → 8)."""
    m = re.search(r'version "(\d+)(?:\.(\d+))?', text)
    if not m:
        return None
    major = int(m.group(1))
    return int(m.group(2) or 0) if major == 1 else major


def check_java() -> Finding:
    java = shutil.which("java")
    fix = "Debian/Ubuntu: `apt-get install openjdk-17-jre-headless`; macOS: `brew install openjdk@17`"
    if java is None:
        return Finding("java", "warn", "Java not found (Kafka for --real needs Java 17+)", fix)
    try:
        proc = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Finding("java", "warn", f"`java -version` failed: {exc}", fix)
    major = java_major(proc.stderr + proc.stdout)
    if major is None or major < 17:
        return Finding("java", "warn", f"Java {major or '?'} at {java}; Kafka needs 17+", fix)
    return Finding("java", "ok", f"Java {major} at {java}")


def check_maven() -> Finding:
    mvn = shutil.which("mvn")
    if mvn is None:
        return Finding("maven", "warn", "Maven not found (fetches the Kafka jars for --real)",
                       "Debian/Ubuntu: `apt-get install maven`; macOS: `brew install maven`")
    return Finding("maven", "ok", f"Maven at {mvn}")


def check_speedups(why_pure: str | None = None) -> Finding:
    """Whether the stream runs its compiled per-row loops (cdc/_speedups.c) or the Python
    ones: both are correct, the Python ones take about twice the CPU per row. `why_pure`:
    cdc.native's reason ("" when compiled); None reads it."""
    if why_pure is None:
        from cdc import native

        why_pure = native.why_pure
    if not why_pure:
        return Finding("cdc speedups", "ok", "compiled per-row CDC loops (cdc/_speedups.c)")
    return Finding("cdc speedups", "warn", f"CDC runs its Python loops, about half as fast: {why_pure}",
                   "Debian/Ubuntu: `apt-get install gcc python3-dev`, then reinstall "
                   "(`rm .venv/.installed && make demo`); unset STRANGLER_PURE_PYTHON")


def run_checks(routes: Path) -> list[Finding]:
    ports = dict(DEFAULT_PORTS)
    with contextlib.suppress(ServiceDeclarationError):  # check_parts reports it
        ports.update((s.name, s.port) for s in declared())
    if routes.exists():
        ports.update(upstream_ports(routes))
    return [
        check_python(), *check_parts(), *check_ports(ports), check_disk(state.state_dir()),
        check_postgres(), check_java(), check_maven(), check_speedups(),
    ]


@app.command()
@guarded
def doctor(
    json_out: Annotated[bool, typer.Option("--json", help="One JSON document.")] = False,
    routes: Annotated[Path, typer.Option(help="Routes file whose upstream ports to check.")] = Path("routes.yaml"),
) -> None:
    """Check this machine for the local stack (and --real): each problem with its fix."""
    findings = run_checks(routes)
    failed = [f for f in findings if f.status == "fail"]
    if json_out:
        print_json({"ok": not failed, "findings": [asdict(f) for f in findings]})
    else:
        table = Table(box=None, pad_edge=False)
        for col in ("", "CHECK", "FINDING", "FIX"):
            table.add_column(col, overflow="fold")
        marks = {"ok": "[green]✓[/green]", "warn": "[yellow]![/yellow]", "fail": "[red]✗[/red]"}
        for f in findings:
            table.add_row(marks[f.status], f.check, f.detail, f.fix)
        out.print(table)
        out.print("ready for `strangler up`" if not failed else
                  f"{len(failed)} problem(s) to fix before `strangler up`")
    if failed:
        raise typer.Exit(3)
