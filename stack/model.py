"""The local stack as data: every process `strangler up` runs, in start order.

One place describes each process — name, command argv, port, environment, readiness
path — so `up`, the demo, and the container manifests (docker-compose, Kubernetes) all
derive from the same definition. Builders here only *describe*; `stack.supervisor` runs.

    embedded_stack(...)  SQLite databases, trigger CDC, direct transport (the default)
    real_stack(...)      the same processes on PostgreSQL (and Kafka once it exists)
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stack.errors import PartMissing
from stack.services import Service, declared

LOOPBACK = "127.0.0.1"
# Whose X-Forwarded-* the monolith and the services believe: the router's addresses. `up`
# runs it on loopback; containers name their private network instead (docker-compose.yml,
# deploy/k8s/config.yaml).
ROUTER_ADDRESSES = "127.0.0.1/32,::1/128"

# Each part the stack runs: the module that must import, and how a user knows it; the
# declared services (stack/services.py) are parts too, by name.
PARTS = {
    "monolith": ("monolith.asgi", "the legacy shop (monolith/)"),
    "router": ("router.__main__", "the strangler router (router/)"),
    "cdc": ("cdc.pipeline", "change-data-capture (cdc/)"),
    "kafka": ("devstack.kafka", "the local Kafka broker (devstack/kafka.py)"),
    "dataplane": ("dataplane.__main__", "nginx/HAProxy as the data plane (dataplane/)"),
}


def all_parts() -> dict[str, tuple[str, str]]:
    """Every part by name, the declared services included: (module, how a user knows it)."""
    return {**PARTS, **{s.name: _part(s.name) for s in declared()}}


def _part(part: str) -> tuple[str, str]:
    if part in PARTS:
        return PARTS[part]
    service = next((s for s in declared() if s.name == part), None)
    if service is None:
        return f"extracted.{part}.__main__", f"the {part} service (extracted/{part}/ and its service.yaml)"
    return f"{service.module}.__main__", service.about


def part_present(part: str) -> bool:
    module, _ = _part(part)
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def require_parts(*parts: str) -> None:
    """Raise `PartMissing` naming every absent part and how to get it back."""
    missing = [_part(p)[1] for p in parts if not part_present(p)]
    if missing:
        raise PartMissing(
            "this checkout lacks " + "; ".join(missing) + ". Update it (`git pull`) and "
            "reinstall (`make .venv/.installed`, or `pip install -e .`), then try again."
        )


@dataclass(frozen=True, kw_only=True)
class Task:
    """A one-shot setup step run to completion before the processes start."""

    name: str
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str | None = None
    timeout: float = 300.0
    install_hint: str = ""


@dataclass(frozen=True, kw_only=True)
class Process:
    """A long-running process: started in order, ready when `ready_path` answers < 500."""

    name: str
    argv: tuple[str, ...]
    port: int | None = None
    host: str = LOOPBACK
    env: Mapping[str, str] = field(default_factory=dict)
    ready_path: str | None = None
    ready_timeout: float = 60.0
    cwd: str | None = None
    install_hint: str = ""
    role: str = "service"  # service | router | dataplane | stream
    settle: float = 2.0  # without a ready_path: alive this long counts as started

    def __post_init__(self) -> None:
        if not self.name.isidentifier() and not self.name.replace("-", "_").isidentifier():
            raise ValueError(f"process name {self.name!r}: use letters, digits, '-' and '_'")
        if not self.argv:
            raise ValueError(f"process {self.name}: argv is empty; give the command to run")
        if self.ready_path is not None and self.port is None:
            raise ValueError(f"process {self.name}: a ready_path needs a port")

    @property
    def base_url(self) -> str | None:
        return f"http://{self.host}:{self.port}" if self.port is not None else None

    @property
    def ready_url(self) -> str | None:
        if self.ready_path is None or self.base_url is None:
            return None
        return self.base_url + self.ready_path


@dataclass(frozen=True, kw_only=True)
class Stack:
    """What `up` runs: setup tasks, then processes in order (stopped in reverse)."""

    mode: str
    processes: tuple[Process, ...]
    setup: tuple[Task, ...] = ()
    routes: str | None = None
    streams: str | None = None

    def __post_init__(self) -> None:
        names = [t.name for t in self.setup] + [p.name for p in self.processes]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise ValueError(f"stack has duplicate names {sorted(dupes)}; every name must be unique")
        ports = [p.port for p in self.processes if p.port is not None]
        if len(ports) != len(set(ports)):
            raise ValueError(f"stack uses a port twice: {ports}; give each process its own")

    def process(self, name: str) -> Process:
        for proc in self.processes:
            if proc.name == name:
                return proc
        raise KeyError(f"no process {name!r}; the stack has {[p.name for p in self.processes]}")

    @property
    def router_url(self) -> str | None:
        for proc in self.processes:
            if proc.role == "router":
                return proc.base_url
        return None

    def describe(self) -> dict[str, Any]:
        """A JSON-able summary (without secrets) for `.strangler/run/stack.json`."""
        return {
            "mode": self.mode,
            "router_url": self.router_url,
            "routes": self.routes,
            "streams": self.streams,
            "processes": [
                {"name": p.name, "port": p.port, "url": p.base_url, "role": p.role,
                 "argv": list(p.argv), "ready_url": p.ready_url}
                for p in self.processes
            ],
        }


DATA_PLANES = ("router", "nginx", "haproxy")


def plane_folder(state: Path, plane: str) -> Path:
    """Where `up --data-plane` keeps the plane's files: its config, access.jsonl, applied.json."""
    return state / "dataplane" / plane


@dataclass(frozen=True, kw_only=True)
class StackSettings:
    """Inputs of the builders: where state lives, which files, which ports, which secrets."""

    state: Path
    routes: Path
    streams: Path | None = None
    router_port: int = 8080  # as `python -m router`; the monolith as in routes.yaml
    monolith_port: int = 8000
    services: tuple[Service, ...] = field(default_factory=declared)
    service_ports: Mapping[str, int] = field(default_factory=dict)  # absent: the declared port
    admin_token: str
    identity_secret: str
    python: str = sys.executable
    monolith_database_url: str | None = None  # None: SQLite under `state`
    service_databases: Mapping[str, str] = field(default_factory=dict)  # absent: SQLite under `state`
    seed: str | None = "small"  # monolith seed size; None skips seeding
    cdc_streams: tuple[str, ...] = ()  # streams to run as processes
    faults: Mapping[str, Mapping[str, float]] = field(default_factory=dict)  # service → switch → value
    router_workers: int = 1
    # "router" (Strangler's own), or "nginx"/"haproxy": `python -m dataplane` serves and
    # follows the routes file in its place (no admin API: `shift` edits the file)
    data_plane: str = "router"
    # seeded users log in without PBKDF2: None means on the embedded SQLite shop only; the
    # walkthrough's throwaway PostgreSQL shop is a demo too
    fast_passwords: bool | None = None

    def __post_init__(self) -> None:
        names = {s.name for s in self.services}
        for name, switches in self.faults.items():
            known = next((s.faults for s in self.services if s.name == name), None)
            if known is None or set(switches) - set(known):
                raise ValueError(f"faults {name}.{sorted(switches)}: no such switch; declared: "
                                 f"{[f'{s.name}.{k}' for s in self.services for k in s.faults]}")
            if any(not 0.0 <= v <= 1.0 for v in switches.values()):
                raise ValueError(f"faults {name}={dict(switches)}: give values in 0..1")
        unknown = (set(self.service_ports) | set(self.service_databases)) - names
        if unknown:
            raise ValueError(f"no declared service {sorted(unknown)}; the stack has {sorted(names)}")
        if self.data_plane not in DATA_PLANES:
            raise ValueError(f"data_plane={self.data_plane!r}: give one of {', '.join(DATA_PLANES)}")
        ports = {"router": self.router_port, "monolith": self.monolith_port,
                 **{s.name: self.port_of(s) for s in self.services}}
        if len(set(ports.values())) != len(ports):
            raise ValueError(f"the router, the monolith and every service need ports of their own, got {ports}")

    def port_of(self, service: Service) -> int:
        return self.service_ports.get(service.name, service.port)

    def database_url(self, service: Service) -> str:
        return self.service_databases.get(service.name) or service.sqlite_url(self.state)


def _monolith_env(s: StackSettings) -> dict[str, str]:
    env = {"DJANGO_SETTINGS_MODULE": "monolith.settings"}
    if s.monolith_database_url:
        env["DATABASE_URL"] = s.monolith_database_url
    else:
        env["MONOLITH_SQLITE_PATH"] = str(s.state / "monolith.sqlite3")
    fast = s.fast_passwords if s.fast_passwords is not None else not s.monolith_database_url
    if fast:  # the local demo shop: seeded users log in without PBKDF2's ~0.3 s of CPU each
        env["MONOLITH_FAST_PASSWORDS"] = "1"
    return env


def _service_env(s: StackSettings, service: Service) -> dict[str, str]:
    switches = s.faults.get(service.name, {})
    return {
        service.database_env: s.database_url(service),
        "STRANGLER_IDENTITY_SECRET": s.identity_secret,
        **{var: str(switches.get(switch, 0.0)) for switch, var in service.faults.items()},
    }


def _cdc_env(s: StackSettings) -> dict[str, str]:
    # the streams file names its databases through these (see streams.yaml)
    env = _monolith_env(s)
    for service in s.services:
        env.update(_service_env(s, service))
    env["MONOLITH_DATABASE_URL"] = (
        s.monolith_database_url or f"sqlite:///{s.state / 'monolith.sqlite3'}"
    )
    if s.streams is not None:
        env["STRANGLER_STREAMS"] = str(s.streams)
    # One ownership file for the router and the streams: the one beside the routes file.
    env["STRANGLER_OWNERSHIP"] = str(s.routes.parent / "ownership.yaml")
    return env


def build_stack(s: StackSettings, *, mode: str) -> Stack:
    """The stack for `mode` ("embedded" or "real"); the databases differ, the shape not."""
    py = s.python
    setup: list[Task] = [
        Task(name="monolith-migrate", argv=(py, "-m", "monolith", "migrate", "--noinput"),
             env=_monolith_env(s)),
    ]
    if s.seed:
        setup.append(Task(name="monolith-seed", argv=(py, "-m", "monolith", "seed", "--size", s.seed),
                          env=_monolith_env(s)))
    processes = [
        Process(
            name="monolith", role="service", port=s.monolith_port,
            env={**_monolith_env(s), "MONOLITH_TRUSTED_PROXIES": ROUTER_ADDRESSES,
                 "STRANGLER_SHOW_BACKEND": "1"},  # the storefront says who served it
            argv=(py, "-m", "monolith", "serve", "--host", LOOPBACK, "--port", str(s.monolith_port)),
            ready_path="/api/categories/",
        ),
        *(_service_process(s, service) for service in s.services),
    ]
    for stream in s.cdc_streams:
        processes.append(Process(
            name=stream_process(stream), role="stream", env=_cdc_env(s),
            argv=(py, "-m", "cli.main", "cdc", "run", stream),
        ))
    if s.data_plane != "router":
        processes.append(Process(
            name=s.data_plane, role="dataplane", port=s.router_port,
            argv=(py, "-m", "dataplane", s.data_plane, "--routes", str(s.routes), "--port", str(s.router_port),
                  "--folder", str(plane_folder(s.state, s.data_plane))),
            ready_path="/", install_hint="python -m devstack.apt (installs nginx and haproxy)",
        ))
        return Stack(mode=mode, setup=tuple(setup), processes=tuple(processes),
                     routes=str(s.routes), streams=str(s.streams) if s.streams else None)
    processes.append(Process(
        name="router", role="router", port=s.router_port,
        env={"STRANGLER_ADMIN_TOKEN": s.admin_token,
             "STRANGLER_IDENTITY_SECRET": s.identity_secret},
        argv=(py, "-m", "router", "--config", str(s.routes), "--host", LOOPBACK,
              "--port", str(s.router_port), "--workers", str(s.router_workers)),
        ready_path="/_strangler/healthz",
    ))
    return Stack(mode=mode, setup=tuple(setup), processes=tuple(processes),
                 routes=str(s.routes), streams=str(s.streams) if s.streams else None)


def _service_process(s: StackSettings, service: Service) -> Process:
    env = _service_env(s, service)
    if service.trusted_proxies_env:
        env[service.trusted_proxies_env] = ROUTER_ADDRESSES
    port = s.port_of(service)
    return Process(name=service.name, role="service", port=port, env=env, ready_path=service.ready,
                   argv=(s.python, "-m", service.module, "--host", LOOPBACK, "--port", str(port)))


def stream_process(stream: str) -> str:
    """The process (compose service, Kubernetes Deployment) running a stream: ``cdc-<name>``
    with ``_`` as ``-`` (Kubernetes names allow no underscore)."""
    return "cdc-" + stream.replace("_", "-")


def reference_stack(*, mode: str = "embedded", streams: tuple[str, ...] = ("catalog",)) -> Stack:
    """The stack with the default ports, relative paths, `python` as the interpreter and
    `${VAR}` placeholders for secrets: what container manifests are generated from and
    checked against (they substitute hosts, paths and secrets their own way)."""
    settings = StackSettings(
        state=Path(".strangler"), routes=Path("routes.yaml"), streams=Path("streams.yaml"),
        router_port=8080, monolith_port=8000,
        admin_token="${STRANGLER_ADMIN_TOKEN}", identity_secret="${STRANGLER_IDENTITY_SECRET}",
        python="python", cdc_streams=streams,
    )
    return build_stack(settings, mode=mode)
