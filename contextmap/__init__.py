"""`strangler map` (step 1): where a Django monolith's bounded contexts are, and what tangles them.

    build_map(settings_module, observe=..., exercise=..., contexts=...) -> dict

runs the project's Django in a child process (contextmap/probe.py; the caller never configures
Django), reads its registry (apps, tables, foreign keys, signal receivers), parses its source
(contextmap/static.py: imports, signal sends), adds what requests did at run time (an observe
file written by contextmap/middleware.py while traffic ran, or ``exercise=True``: a GET to
every URL pattern on a throwaway test database), and groups it into contexts
(contextmap/analyse.py). contextmap/render.py draws it (table, Mermaid, Graphviz).

    MapError            the map could not be made; the message says what to fix
    ├── SettingsError   the settings module does not import or Django does not start
    ├── NoAppsError     the project installs no apps of its own
    ├── ObserveError    the observe file is missing or not one contextmap wrote
    └── ContextsError   the --contexts file is malformed or names unknown apps
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from contextmap.analyse import build

__all__ = ["ContextsError", "MapError", "NoAppsError", "ObserveError", "SettingsError", "build_map",
           "load_contexts", "load_observed"]

PACKAGE_ROOT = Path(__file__).resolve().parent.parent


class MapError(Exception):
    """The map could not be made; the message says what to do."""


class SettingsError(MapError):
    pass


class NoAppsError(MapError):
    pass


class ObserveError(MapError):
    pass


class ContextsError(MapError):
    pass


def load_observed(path: Path) -> list[dict[str, Any]]:
    """Request records from an observe file (JSON lines by contextmap.middleware)."""
    hint = ("record one by adding \"contextmap.middleware.TableRecorderMiddleware\" first in "
            "MIDDLEWARE with STRANGLER_MAP_OBSERVE=FILE and running traffic, or use --exercise")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ObserveError(f"{path}: no such observe file; {hint}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ObserveError(f"{path}: cannot read it as text ({exc}); {hint}") from None
    records = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ObserveError(f"{path}:{n}: not JSON ({exc.msg}); an observe file has one JSON "
                               f"record per line; {hint}") from None
        if not isinstance(rec, dict) or rec.get("contextmap") != 1 or \
                not isinstance(rec.get("statements"), list) or "endpoint" not in rec:
            raise ObserveError(f"{path}:{n}: not a contextmap request record (want "
                               f"{{\"contextmap\": 1, \"endpoint\": ..., \"statements\": [...]}}); {hint}")
        rec.setdefault("transactions", [])
        rec.setdefault("joins", [])
        records.append(rec)
    if not records:
        raise ObserveError(f"{path}: holds no request records; {hint}")
    return records


def load_contexts(path: Path) -> dict[str, list[str]]:
    """A declared grouping: YAML or JSON ``{contexts: {name: [app label, ...]}}`` (or the bare map)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ContextsError(f"{path}: no such contexts file") from None
    except (OSError, yaml.YAMLError) as exc:
        raise ContextsError(f"{path}: not YAML or JSON ({exc})") from None
    if isinstance(data, dict) and "contexts" in data:
        data = data["contexts"]
    if not isinstance(data, dict) or not all(
            isinstance(k, str) and isinstance(v, list) and all(isinstance(a, str) for a in v)
            for k, v in data.items()):
        raise ContextsError(f"{path}: want `contexts: {{name: [app label, ...]}}`, "
                            f"e.g. `contexts: {{sales: [orders, payments]}}`")
    seen: dict[str, str] = {}
    for name, labels in data.items():
        for label in labels:
            if label in seen:
                raise ContextsError(f"{path}: contexts.{name}: app {label!r} is already in "
                                    f"context {seen[label]!r}; put each app in one context")
            seen[label] = name
    return data


def probe(settings_module: str, *, exercise: bool = False, cwd: Path | None = None,
          timeout: float = 300) -> dict[str, Any]:
    """Run contextmap.probe in a child process; its JSON document."""
    cwd = Path(cwd or os.getcwd())
    env = dict(os.environ)
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(cwd), str(PACKAGE_ROOT), env.get("PYTHONPATH", "")) if p)
    with tempfile.TemporaryDirectory(prefix="contextmap-") as tmp:
        out = Path(tmp) / "probe.json"
        cmd = [sys.executable, "-m", "contextmap.probe", "--settings", settings_module,
               "--out", str(out), *(["--exercise"] if exercise else [])]
        proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=timeout, check=False)
        if not out.is_file():
            raise MapError(f"the probe of {settings_module!r} died (exit {proc.returncode}): "
                           f"{proc.stderr.strip()[-1500:]}")
        result: dict[str, Any] = json.loads(out.read_text())
    if not result.get("ok"):
        kind = result.get("error")
        cls = SettingsError if kind in ("settings", "setup") else NoAppsError if kind == "no-apps" \
            else MapError
        raise cls(result.get("message", "the probe failed"))
    return result


def build_map(settings_module: str, *, observe: Path | None = None, exercise: bool = False,
              contexts: Path | dict[str, list[str]] | None = None, cwd: Path | None = None) -> dict[str, Any]:
    """The context map of the Django project ``settings_module`` (see the module docstring)."""
    observed = load_observed(Path(observe)) if observe is not None else []
    declared = load_contexts(contexts) if isinstance(contexts, Path) else contexts
    result = probe(settings_module, exercise=exercise, cwd=cwd)
    static = result["static"]
    if declared:
        known = {a["label"] for a in static["apps"]}
        unknown = sorted({a for labels in declared.values() for a in labels} - known)
        if unknown:
            raise ContextsError(f"the contexts name apps {settings_module!r} does not install: "
                                f"{', '.join(unknown)}; its app labels are {', '.join(sorted(known))}")
    doc = build(static, [*observed, *result["observed"]], declared)
    doc["settings"] = settings_module
    doc["observed_from"] = ("observe file" if observe else "") + \
        (" + " if observe and exercise else "") + ("exercise" if exercise else "")
    return doc
