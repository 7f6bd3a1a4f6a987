"""The ledger: the append-only history of routing and ownership changes, and who made them.

The router appends one JSON line per change (any source: `shift`, `canary`, the admin
API, an edited file) to the ledger named in routes.yaml (`ledger:`, relative to that
file's folder; default `.strangler/ledger.jsonl`). The operator's side appends its own
entries (`append_entry`) in the same format: every phase of `strangler own` ("kind":
"ownership") and every gate override of `shift`/`canary --force` ("kind": "gate-override").
"""

from __future__ import annotations

import getpass
import json
from pathlib import Path
from typing import Any

import yaml


def actor() -> str:
    """Who acts, as the ledger names them: `user@cli`."""
    try:
        return f"{getpass.getuser()}@cli"
    except (KeyError, OSError):
        return "cli"


def ledger_path(routes: Path) -> Path:
    """Where the routes file says its ledger is (relative to the file's folder)."""
    try:
        from router.config import load_config

        return Path(load_config(routes).ledger_path)
    except Exception:  # no router part, or a file it refuses: read the key ourselves
        pass
    try:
        doc = yaml.safe_load(routes.read_text()) or {}
    except (OSError, yaml.YAMLError):
        doc = {}
    name = doc.get("ledger") if isinstance(doc, dict) else None
    if name:
        path = Path(name)
        return path if path.is_absolute() else (routes.absolute().parent / path)
    return routes.absolute().parent / ".strangler" / "ledger.jsonl"


def route_names(routes: Path) -> list[str]:
    """The routes the routes file declares (read as YAML: a file the router refuses still names them)."""
    try:
        doc = yaml.safe_load(routes.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return []
    declared = doc.get("routes") if isinstance(doc, dict) else None
    if isinstance(declared, dict):
        return [str(n) for n in declared]
    if isinstance(declared, list):
        return [str(r["name"]) for r in declared if isinstance(r, dict) and r.get("name")]
    return []


def append_entry(path: Path, entry: dict[str, Any]) -> dict[str, Any]:
    """Append one entry with the router's own ledger writer (time and ts added, locked, fsynced)."""
    from router.ledger import append_record

    return append_record(path, entry)


def read_ledger(path: Path, *, route: str | None = None) -> list[dict[str, Any]]:
    """Every entry (oldest first); a torn last line (a writer mid-append) is skipped."""
    if not path.exists():
        return []
    entries = []
    for line in path.read_text(errors="replace").splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if not isinstance(entry, dict):
            continue
        if route is not None and entry.get("route") != route:
            continue
        entries.append(entry)
    return entries
