"""`strangler up / down / ps / logs`: run the local stack as supervised processes.

`up` builds the stack from `stack.model`, starts it through `stack.supervisor`, waits for
every process to be ready, and then (unless `--detach`) stays in the foreground: Ctrl-C or
SIGTERM stops everything; a process that dies takes the stack down with its log tail.
`down` stops a stack started by any `up`, through the pid files in `.strangler/run/`.
"""

from __future__ import annotations

import shutil
import signal
import time
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer
import yaml
from rich.table import Table

from cli.errors import CLIError
from cli.output import err, guarded, out, print_json, progress
from control.errors import StackError
from stack import state
from stack.model import DATA_PLANES, Stack, StackSettings, build_stack, require_parts
from stack.realstack import RealServices, stop_postgres
from stack.services import ServiceDeclarationError, declared, parse_faults
from stack.supervisor import Supervisor, http_ready

app = typer.Typer()

# as in the repository's routes.yaml and `python -m router` (8080); each service's port is in
# its extracted/<name>/service.yaml
DEFAULT_PORTS = {"router": 8080, "monolith": 8000}


def supervisor() -> Supervisor:
    return Supervisor(run_dir=state.run_dir(), log_dir=state.log_dir())


def upstream_ports(routes: Path) -> dict[str, int]:
    """Ports of the loopback upstreams named in the routes file (the monolith, each service)."""
    try:
        doc = yaml.safe_load(routes.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise CLIError(f"cannot read routes file {routes}: {exc}") from exc
    upstreams = doc.get("upstreams") or {}
    if isinstance(upstreams, list):
        upstreams = {u.get("name"): u for u in upstreams if isinstance(u, dict)}
    ports: dict[str, int] = {}
    from urllib.parse import urlsplit

    for name, spec in upstreams.items():
        url = spec.get("url") if isinstance(spec, dict) else spec
        if not isinstance(url, str):
            continue
        parts = urlsplit(url)
        if parts.hostname in ("127.0.0.1", "localhost") and parts.port:
            ports[str(name)] = parts.port
    return ports


def stream_names(streams: Path | None) -> tuple[str, ...]:
    if streams is None or not streams.exists():
        return ()
    doc = yaml.safe_load(streams.read_text()) or {}
    found = doc.get("streams") or {}
    if isinstance(found, list):
        return tuple(str(s.get("name")) for s in found if isinstance(s, dict))
    return tuple(str(name) for name in found)


def settings_for(*, routes: Path, streams: Path | None, port: int, seed: str | None,
                 cdc: bool, faults: dict[str, dict[str, float]] | None = None, monolith_db: str | None = None,
                 service_dbs: dict[str, str] | None = None, data_plane: str = "router") -> StackSettings:
    if not routes.exists():
        raise CLIError(
            f"no routes file at {routes}: give one with --routes (the repository's "
            "routes.yaml is the starting point)"
        )
    ports = {**DEFAULT_PORTS, **upstream_ports(routes)}
    services = declared()
    return StackSettings(
        state=state.state_dir(), routes=routes.resolve(),
        streams=streams.resolve() if streams and streams.exists() else None,
        router_port=port, monolith_port=ports["monolith"], services=services,
        service_ports={s.name: ports[s.name] for s in services if s.name in ports},
        admin_token=state.admin_token(create=True) or "",
        identity_secret=state.identity_secret(),
        seed=seed, cdc_streams=stream_names(streams) if cdc else (),
        faults=faults or {},
        monolith_database_url=monolith_db, service_databases=service_dbs or {}, data_plane=data_plane,
    )


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def print_processes(sup: Supervisor) -> None:
    table = Table(box=None, pad_edge=False)
    for col in ("NAME", "PID", "STATE", "URL", "UPTIME", "LOG"):
        table.add_column(col, overflow="fold")
    now = time.time()
    for r in sup.running():
        if not r.alive:
            health = "[red]dead[/red]"
        elif r.url is None:
            health = "[green]running[/green]"
        else:
            health = "[green]ready[/green]" if http_ready(r.url + "/") else "[yellow]not answering[/yellow]"
        table.add_row(r.name, str(r.pid), health, r.url or "-",
                      f"{int(now - r.started_at)}s", r.log)
    out.print(table)


def embedded_data() -> tuple[str, ...]:
    """What `up --fresh` deletes from the state folder: the SQLite databases and CDC state."""
    return ("monolith.sqlite3", *(s.sqlite_file for s in declared()), "cdc")


@app.command()
@guarded
def up(
    real: Annotated[bool, typer.Option("--real", help="PostgreSQL (wal_level=logical) and Kafka instead of SQLite and direct transport.")] = False,
    detach: Annotated[bool, typer.Option("--detach", "-d", help="Return once ready; stop later with `strangler down`.")] = False,
    routes: Annotated[Path, typer.Option(help="Routing table the router serves; a loopback upstream URL in it fixes the port of the monolith or of the service it names.")] = Path("routes.yaml"),
    streams: Annotated[Path, typer.Option(help="CDC streams to run (every stream declared).")] = Path("streams.yaml"),
    port: Annotated[int, typer.Option(help="Router port on 127.0.0.1.")] = DEFAULT_PORTS["router"],
    seed: Annotated[str, typer.Option(help="Monolith seed size for a new database, or 'none'.")] = "small",
    fresh: Annotated[bool, typer.Option("--fresh", help="Delete the embedded databases and CDC state first.")] = False,
    cdc: Annotated[bool, typer.Option("--cdc/--no-cdc", help="Run the CDC streams.")] = True,
    fault: Annotated[list[str] | None, typer.Option("--fault", help="A service's fault switch for drills, SERVICE.SWITCH=VALUE (e.g. catalog.fail_rate=0.5: half its /api/ answers are 500); repeatable. The switches are in extracted/<service>/service.yaml.")] = None,
    data_plane: Annotated[str, typer.Option("--data-plane", help="What serves --port: Strangler's router, or a real nginx or haproxy rendered from the routes file and kept on it (steer with `strangler shift ... --routes FILE`).")] = "router",
) -> None:
    """Start the local stack (the monolith, every service declared in extracted/*/service.yaml,
    the CDC streams, and the router — or nginx/HAProxy with --data-plane) on loopback."""
    if data_plane not in DATA_PLANES:
        raise CLIError(f"--data-plane {data_plane!r}: give one of {', '.join(DATA_PLANES)}")
    try:
        switches = parse_faults(fault or [], declared())
    except ServiceDeclarationError as exc:
        raise typer.BadParameter(str(exc).removeprefix("--fault "), param_hint="--fault") from None
    parts = (["monolith", *(s.name for s in declared()), "router" if data_plane == "router" else "dataplane"]
             + (["cdc"] if cdc and streams.exists() else []))
    require_parts(*parts)
    sup = supervisor()
    home = state.state_dir()
    if fresh:
        sup.preflight(Stack(mode="check", processes=()))  # never wipe under a running stack
        for name in embedded_data():
            target = home / name
            if target.is_dir():
                shutil.rmtree(target)
            target.unlink(missing_ok=True)
    # seed a new database only: the seed refuses a seeded one, and data survives restarts
    seed_size = None if seed == "none" or (not real and (home / "monolith.sqlite3").exists()) else seed

    def settings(monolith_db: str | None = None, service_dbs: dict[str, str] | None = None,
                 streams_file: Path = streams) -> StackSettings:
        return settings_for(routes=routes, streams=streams_file, port=port, seed=seed_size, cdc=cdc,
                            faults=switches, monolith_db=monolith_db, service_dbs=service_dbs,
                            data_plane=data_plane)

    stack = build_stack(settings(), mode="real" if real else "embedded")
    sup.preflight(stack)
    services = RealServices(run_dir=sup.run_dir, progress=progress)
    # Ctrl-C and SIGTERM both stop the stack (also when started with SIGINT ignored, as a
    # background job of a script is)
    previous = {sig: signal.signal(sig, _raise_interrupt) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        if real:
            services.start(streams=streams if cdc else None, detach=detach, state=home)
            stack = build_stack(settings(services.monolith_db, services.databases,
                                         services.streams or streams), mode="real")
        try:
            sup.start(stack, progress=progress)
        except BaseException:
            services.stop()
            raise
        print_processes(sup)
        if cdc and stack.streams:
            enforce_ownership(stack)
        if data_plane == "router":
            err.print(f"router: {stack.router_url}  ·  admin token in {home / 'admin-token'}")
        else:
            plane = stack.process(data_plane)
            err.print(f"{data_plane}: {plane.base_url} follows {routes} (no admin API) — steer it with "
                      f"`strangler shift ROUTE --to BACKEND --weight N --routes {routes}`; "
                      f"what it applied: `strangler logs {data_plane}`")
            _say_limits(data_plane, routes)
        if detach:
            err.print("detached; stop with `strangler down`")
            return
        err.print("press Ctrl-C to stop the stack")
        _supervise(sup, services)
    except KeyboardInterrupt:
        err.print("stopping…")
        sup.stop(progress=progress)
        services.stop()
        err.print("stack stopped")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def enforce_ownership(stack: Stack) -> None:
    """The non-owner side's database refuses writes from the start (ownership.yaml)."""
    from handover.enforce import enforce_declared

    env = next((p.env for p in stack.processes if p.role == "stream"), None)
    if env is None or stack.streams is None:
        return
    for group, sides in enforce_declared(Path(stack.streams), dict(env)).items():
        guarded = [f"{side}.{t}" for side, tables in sides.items() for t, what in tables.items()
                   if what not in ("open", "removed")]
        err.print(f"ownership {group}: writes guarded in the database on {', '.join(guarded) or 'nothing'}")


def _say_limits(data_plane: str, routes: Path) -> None:
    """What the routes ask for that the plane will not do (the router would): said, never silent."""
    from dataplane import run
    from dataplane.errors import ExportError
    from dataplane.model import load_plan

    try:
        lines = run.limits(data_plane, load_plan(routes))
    except ExportError:
        return  # the plane itself refused to start on it, and said why
    for line in lines:
        err.print(f"  {data_plane} does not do: {line}")
    if any("identity bridge" in line for line in lines):
        err.print(f"  so a service behind those routes sees no user; `strangler own` refuses to move writes "
                  f"there while {data_plane} is in front")


def _supervise(sup: Supervisor, services: RealServices) -> None:
    """Stay up while every process lives; a death stops the rest, `down` ends us quietly."""
    while True:
        time.sleep(0.5)
        runs = sup.running()
        if not runs:
            services.stop()
            err.print("stack stopped by `strangler down`")
            return
        dead = [r for r in runs if not r.alive]
        if dead:
            logs = "; ".join(f"{r.name} (log {r.log})" for r in dead)
            sup.stop(progress=progress)
            services.stop()
            raise StackError(f"stopped the stack because a process exited: {logs}")


@app.command()
@guarded
def down() -> None:
    """Stop every process of the local stack (and the PostgreSQL of `up --real`)."""
    sup = supervisor()
    # one line says what stopped: no progress line per process repeating it on stderr
    stopped = sup.stop()
    pg = stop_postgres(sup.run_dir)
    if stopped or pg:
        out.print("stopped: " + ", ".join(stopped + (["postgres"] if pg else [])))
    else:
        out.print("nothing was running")


@app.command()
@guarded
def ps(json_out: Annotated[bool, typer.Option("--json", help="One JSON document.")] = False) -> None:
    """List the processes of the local stack and whether each answers."""
    sup = supervisor()
    if json_out:
        doc: list[dict[str, Any]] = [
            {"name": r.name, "pid": r.pid, "alive": r.alive, "port": r.port, "url": r.url,
             "log": r.log, "started_at": r.started_at}
            for r in sup.running()
        ]
        print_json(doc)
        return
    if not sup.running():
        out.print("nothing is running (start the stack with `strangler up`)")
        return
    print_processes(sup)


@app.command()
@guarded
def logs(
    name: Annotated[str, typer.Argument(help="Process or setup step name (see `strangler ps`).")],
    lines: Annotated[int, typer.Option("--lines", "-n", help="How many last lines.")] = 50,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new lines until Ctrl-C.")] = False,
) -> None:
    """Print the log of one process of the stack."""
    sup = supervisor()
    path = sup.log_path(name)
    if not path.exists():
        known = sorted(p.stem for p in sup.log_dir.glob("*.log"))
        err.print(f"no log for {name!r}; known: {', '.join(known) or 'none (nothing ran yet)'}")
        raise typer.Exit(2)
    with path.open(errors="replace") as fh:
        for line in fh.readlines()[-lines:]:
            typer.echo(line, nl=False)
        if not follow:
            return
        try:
            while True:
                line = fh.readline()
                if line:
                    typer.echo(line, nl=False)
                else:
                    time.sleep(0.2)
        except KeyboardInterrupt:
            return
