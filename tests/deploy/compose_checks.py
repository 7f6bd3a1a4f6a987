"""Checks of a Compose file: the Compose Specification's JSON schema, then what it can't see.

No Docker engine runs here, so `docker compose config` is not available. Instead:
- ``interpolate`` resolves ``${VAR:-default}`` the way Compose does, refusing any reference
  that has no default (an unset variable would silently become an empty string);
- ``schema_errors`` validates against the schema vendored by ``check-jsonschema``;
- ``semantic_problems`` checks what a schema can't see: depends_on targets exist and have
  healthchecks, pass-through env vars, published port clashes, volumes and paths.

Every function returns a list of human-readable problems; an empty list means clean.
"""

from __future__ import annotations

import importlib.resources
import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

# ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?err}, ${VAR?err}, ${VAR:+alt}, $VAR; $$ escapes.
_REF = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


@cache
def compose_schema() -> dict[str, Any]:
    """The Compose Specification JSON schema as shipped by check-jsonschema (never downloaded)."""
    ref = importlib.resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    return json.loads(ref.read_text(encoding="utf-8"))


def interpolate(doc: Any, env: dict[str, str] | None = None) -> tuple[Any, list[str]]:
    """The document with every variable reference resolved; and each reference left unset.

    ``env`` stands for the caller's shell environment (empty by default: the file must work
    on a machine where nobody exported anything).
    """
    env = env or {}
    problems: list[str] = []

    def sub(text: str, where: str) -> str:
        def one(m: re.Match[str]) -> str:
            if m.group("escaped"):
                return "$"
            name = m.group("braced") or m.group("bare")
            op, arg = m.group("op"), m.group("arg")
            value = env.get(name)
            if op in (":-", "-"):
                if value is None or (op == ":-" and value == ""):
                    return arg
                return value
            if op in (":+", "+"):
                return arg if value else ""
            if value is None:
                how = "required (:?) but" if op in (":?", "?") else "referenced but"
                problems.append(f"{where}: ${{{name}}} is {how} has no default; give it one (${{{name}:-...}})")
                return ""
            return value

        return _REF.sub(one, text)

    def walk(node: Any, where: str) -> Any:
        if isinstance(node, str):
            return sub(node, where)
        if isinstance(node, dict):
            return {k: walk(v, f"{where}.{k}") for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v, f"{where}[{i}]") for i, v in enumerate(node)]
        return node

    return walk(doc, "$"), problems


def schema_errors(doc: Any) -> list[str]:
    """Violations of the Compose Specification schema, each with its key path."""
    schema = compose_schema()
    validator_cls = jsonschema.validators.validator_for(schema)
    validator = validator_cls(schema)
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))
    return [f"{'.'.join(map(str, e.absolute_path)) or '$'}: {e.message}" for e in errors]


def depends_on(service: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """depends_on in its long form whatever form it was written in."""
    raw = service.get("depends_on") or {}
    if isinstance(raw, list):
        return {name: {"condition": "service_started"} for name in raw}
    return {name: (spec or {"condition": "service_started"}) for name, spec in raw.items()}


def has_healthcheck(service: dict[str, Any]) -> bool:
    hc = service.get("healthcheck")
    if not hc or hc.get("disable"):
        return False
    test = hc.get("test")
    return bool(test) and test != ["NONE"]


def published_ports(service: dict[str, Any]) -> list[tuple[str, int, str]]:
    """(host ip, host port, protocol) for every port the service publishes on the host."""
    out: list[tuple[str, int, str]] = []
    for entry in service.get("ports") or []:
        if isinstance(entry, dict):
            if entry.get("published") is None:
                continue
            host_ip = str(entry.get("host_ip") or "0.0.0.0")
            protocol = str(entry.get("protocol") or "tcp")
            out.extend((host_ip, p, protocol) for p in _port_range(str(entry["published"])))
            continue
        text = str(entry)
        text, _, protocol = text.partition("/")
        protocol = protocol or "tcp"
        parts = text.rsplit(":", 2)
        if len(parts) == 1:
            continue  # container port only: Docker picks an ephemeral host port
        host_ip = parts[0] if len(parts) == 3 else "0.0.0.0"
        host_ip = host_ip.strip("[]") or "0.0.0.0"
        published = parts[-2]
        if published:
            out.extend((host_ip, p, protocol) for p in _port_range(published))
    return out


def _port_range(text: str) -> list[int]:
    low, _, high = text.partition("-")
    return list(range(int(low), int(high or low) + 1))


def _clash(a: tuple[str, int, str], b: tuple[str, int, str]) -> bool:
    wildcard = ("0.0.0.0", "::", "")
    same_ip = a[0] == b[0] or a[0] in wildcard or b[0] in wildcard
    return same_ip and a[1] == b[1] and a[2] == b[2]


def semantic_problems(doc: dict[str, Any], base_dir: Path) -> list[str]:
    """What the schema can't see. ``doc`` must already be interpolated."""
    problems: list[str] = []
    services: dict[str, dict[str, Any]] = doc.get("services") or {}
    declared_volumes = set((doc.get("volumes") or {}).keys())

    for name, svc in services.items():
        for target, spec in depends_on(svc).items():
            where = f"services.{name}.depends_on.{target}"
            condition = spec.get("condition", "service_started")
            if target not in services:
                problems.append(f"{where}: no service named {target!r}")
                continue
            if condition == "service_completed_successfully":
                continue  # a one-shot job (migrations): it exits, it has nothing to probe
            if condition != "service_healthy":
                problems.append(
                    f"{where}: condition {condition!r} races the target's start; "
                    "use service_healthy (and give the target a healthcheck)"
                )
            if not has_healthcheck(services[target]):
                problems.append(f"{where}: {target!r} has no healthcheck to wait for")

        env = svc.get("environment") or {}
        if isinstance(env, list):
            env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
        for key, value in env.items():
            if value is None:
                problems.append(
                    f"services.{name}.environment.{key}: no value (passed through from the "
                    "host shell, so unset on a clean machine); give it a value"
                )
        for env_file in _env_files(svc):
            path, required = env_file
            if required and not (base_dir / path).is_file():
                problems.append(f"services.{name}.env_file: {path} does not exist")

        for vol in svc.get("volumes") or []:
            problems += _volume_problems(name, vol, declared_volumes, base_dir)

        build = svc.get("build")
        if build is not None:
            problems += _build_problems(name, build, base_dir)
        elif not svc.get("image"):
            problems.append(f"services.{name}: neither image nor build")

        image = svc.get("image")
        if image and build is None and not _pinned(image):
            problems.append(f"services.{name}.image: {image!r} is not pinned to a version tag or digest")

    seen: list[tuple[str, tuple[str, int, str]]] = []
    for name, svc in services.items():
        for port in published_ports(svc):
            for other, taken in seen:
                if _clash(port, taken):
                    problems.append(
                        f"services.{name}.ports: host port {port[1]}/{port[2]} is already "
                        f"published by {other!r}"
                    )
            seen.append((name, port))
    return problems


def _pinned(image: str) -> bool:
    if "@sha256:" in image:
        return True
    last = image.rsplit("/", 1)[-1]
    return ":" in last and not last.endswith(":latest")


def _env_files(svc: dict[str, Any]) -> list[tuple[str, bool]]:
    raw = svc.get("env_file")
    if raw is None:
        return []
    items = raw if isinstance(raw, list) else [raw]
    out = []
    for item in items:
        if isinstance(item, dict):
            out.append((str(item["path"]), bool(item.get("required", True))))
        else:
            out.append((str(item), True))
    return out


def _volume_problems(name: str, vol: Any, declared: set[str], base_dir: Path) -> list[str]:
    if isinstance(vol, dict):
        kind, source = vol.get("type", "volume"), vol.get("source")
    else:
        source, _, _rest = str(vol).partition(":")
        if not _rest:
            return []  # anonymous volume
        kind = "bind" if source.startswith((".", "/", "~")) else "volume"
    where = f"services.{name}.volumes: {source}"
    if kind == "volume" and source and source not in declared:
        return [f"{where} is a named volume not declared under top-level volumes"]
    if kind == "bind" and source and source.startswith(".") and not (base_dir / source).exists():
        return [f"{where} does not exist next to the compose file"]
    return []


def _build_problems(name: str, build: Any, base_dir: Path) -> list[str]:
    if isinstance(build, str):
        build = {"context": build}
    context = base_dir / str(build.get("context", "."))
    dockerfile = context / str(build.get("dockerfile", "Dockerfile"))
    where = f"services.{name}.build"
    if not context.is_dir():
        return [f"{where}.context: {context} is not a folder"]
    if not dockerfile.is_file():
        return [f"{where}.dockerfile: {dockerfile} does not exist"]
    target = build.get("target")
    if target:
        stages = re.findall(r"(?im)^\s*FROM\s+\S+\s+AS\s+(\S+)", dockerfile.read_text())
        if target not in stages:
            return [f"{where}.target: no stage {target!r} in {dockerfile.name} (stages: {stages})"]
    return []
