"""The services a stack runs beside the monolith, as data: every extracted/<name>/service.yaml.

Place in the flow: `stack.model.build_stack` turns each `Service` into a process (argv,
port, database URL, readiness path, fault switches); `up`, the walkthrough, the container
manifests' agreement test and `doctor` all go through it, so nothing in `cli/` names a
particular service. A declaration that cannot be used is a `ServiceDeclarationError`
naming the file and the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from stack.errors import StackError

SERVICES_ROOT = Path(__file__).resolve().parents[1] / "extracted"
DECLARATION = "service.yaml"


class ServiceDeclarationError(StackError):
    """A service.yaml is missing a field, has a wrong one, or clashes with another."""


@dataclass(frozen=True, kw_only=True)
class Service:
    name: str
    about: str
    module: str
    port: int
    ready: str
    database_env: str
    database: str
    trusted_proxies_env: str | None = None
    faults: Mapping[str, str] = field(default_factory=dict)  # switch → environment variable
    source: str = ""

    def sqlite_url(self, state: Path) -> str:
        return f"sqlite:///{state / self.sqlite_file}"

    @property
    def sqlite_file(self) -> str:
        return f"{self.database}.sqlite3"


def load(path: Path) -> Service:
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ServiceDeclarationError(f"{path}: cannot read it ({exc})") from exc

    def need(mapping: Any, key: str, kind: type, where: str = "") -> Any:
        value = mapping.get(key) if isinstance(mapping, dict) else None
        if not isinstance(value, kind) or isinstance(value, bool) or value == "":
            what = {int: "an integer", str: "a text", dict: "a mapping"}[kind]
            raise ServiceDeclarationError(f"{path}: `{where}{key}` must be {what} "
                                          f"(got {value!r}) — see extracted/catalog/service.yaml")
        return value

    name = need(doc, "name", str)
    if name != path.parent.name:
        raise ServiceDeclarationError(f"{path}: name {name!r} differs from its folder {path.parent.name!r}")
    faults = doc.get("faults") or {}
    if not isinstance(faults, dict) or not all(isinstance(v, str) and v for v in faults.values()):
        raise ServiceDeclarationError(f"{path}: `faults` maps a switch to its environment variable")
    port = need(doc, "port", int)
    if not 0 < port < 65536:
        raise ServiceDeclarationError(f"{path}: port {port} is not a TCP port")
    ready = need(doc, "ready", str)
    if not ready.startswith("/"):
        raise ServiceDeclarationError(f"{path}: `ready` is a path starting with / (got {ready!r})")
    database = need(doc, "database", dict)
    return Service(name=name, about=str(doc.get("about") or f"the {name} service ({path.parent})"),
                   module=need(doc, "module", str), port=port, ready=ready,
                   database_env=need(database, "env", str, "database."),
                   database=need(database, "name", str, "database."),
                   trusted_proxies_env=doc.get("trusted_proxies_env") or None,
                   faults={str(k): v for k, v in faults.items()}, source=str(path))


def discover(root: Path = SERVICES_ROOT) -> tuple[Service, ...]:
    """Every declared service under `root`, by name; two with one port or database refuse."""
    found = tuple(load(p) for p in sorted(root.glob(f"*/{DECLARATION}")))
    for attr in ("port", "database", "database_env"):
        seen: dict[Any, str] = {}
        for s in found:
            value = getattr(s, attr)
            if value in seen:
                raise ServiceDeclarationError(f"{s.source} and {seen[value]} both declare {attr} {value!r}: "
                                              "give each service its own")
            seen[value] = s.source
    return found


@cache
def declared() -> tuple[Service, ...]:
    """The services of this checkout (read once per process)."""
    return discover()


def parse_faults(pairs: list[str], services: tuple[Service, ...]) -> dict[str, dict[str, float]]:
    """`["catalog.fail_rate=0.5"]` → {"catalog": {"fail_rate": 0.5}}; unknown names and values
    outside 0..1 refuse, saying what exists."""
    out: dict[str, dict[str, float]] = {}
    by_name = {s.name: s for s in services}
    for pair in pairs:
        target, sep, raw = pair.partition("=")
        name, dot, switch = target.partition(".")
        switches = [f"{s.name}.{k}" for s in services for k in s.faults]
        if not sep or not dot or name not in by_name or switch not in by_name[name].faults:
            raise ServiceDeclarationError(f"--fault {pair!r}: give SERVICE.SWITCH=VALUE, one of "
                                          f"{', '.join(switches) or '(no service declares a fault switch)'}")
        try:
            value = float(raw)
        except ValueError:
            value = -1.0
        if not 0.0 <= value <= 1.0:
            raise ServiceDeclarationError(f"--fault {pair!r}: the value is a share of requests, 0..1")
        out.setdefault(name, {})[switch] = value
    return out
