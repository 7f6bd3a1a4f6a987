"""The running rollouts, as files: what a rollout is doing, and what it is asked to do.

Place in the flow: the rollout controller (rollout/controller.py, a detached process of
`strangler rollout start`) keeps its whole persisted rollout in `<state>/rollouts/<route>.json`
("kind": "rollout": spec, step, weight, deadline, window, checks, verdict, history); the
foreground `strangler canary` loop (rollout/canary.py) publishes a smaller document there each
poll. The dashboard's buttons (router/admin.py,
`POST /_strangler/rollouts/<route>/<pause|resume|abort|promote>`) and `strangler rollout
pause|resume|abort|promote` write a request beside it, `<route>.request.json`, which the
controller or loop takes (reads and deletes) on its next poll. Files,
not a socket: the router and the canary are separate processes, either may restart, and the
router stays the one process the browser talks to.

`<state>` is STRANGLER_STATE_DIR when set, else the ledger's folder (`.strangler/` by default):
the folder the CLI and the router of one stack share.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any

ACTIONS = ("pause", "resume", "abort", "promote")  # promote: the rollout controller only
STATE_ENV = "STRANGLER_STATE_DIR"


def folder(ledger_path: Path) -> Path:
    explicit = os.environ.get(STATE_ENV)
    return (Path(explicit) if explicit else Path(ledger_path).parent) / "rollouts"


def _write(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc, default=str))
    os.replace(tmp, path)  # readers never see half a document


def publish(where: Path, doc: dict[str, Any]) -> None:
    """The canary's state of one route (`doc["route"]`), stamped with the time."""
    _write(where / f"{doc['route']}.json", {**doc, "updated": time.time(), "pid": os.getpid()})


def read_all(where: Path) -> list[dict[str, Any]]:
    """Every route's last published state, newest first; a rollout whose process is gone
    while it still said `running` or `paused` is shown as `gone`."""
    found = []
    for path in where.glob("*.json") if where.is_dir() else []:
        if path.name.endswith(".request.json"):
            continue
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if doc.get("state") in ("running", "paused") and not alive(doc.get("pid")):
            doc["state"] = "gone"
        pending = where / f"{path.stem}.request.json"
        if pending.exists():
            with contextlib.suppress(OSError, ValueError):
                doc["request"] = json.loads(pending.read_text())
        found.append(doc)
    return sorted(found, key=lambda d: -float(d.get("updated") or 0))


def request(where: Path, route: str, *, action: str, actor: str, reason: str) -> dict[str, Any]:
    """Ask the rollout of `route` to pause, resume, abort or promote (acted on at its next poll)."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}: use one of {', '.join(ACTIONS)}")
    doc = {"action": action, "actor": actor, "reason": reason, "time": time.time()}
    _write(where / f"{route}.request.json", doc)
    return doc


def take(where: Path, route: str) -> dict[str, Any] | None:
    """The pending request for `route`, removed so it is acted on once; None if there is none."""
    path = where / f"{route}.request.json"
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    with contextlib.suppress(OSError):
        path.unlink()
    return doc if isinstance(doc, dict) else None


def alive(pid: Any) -> bool:
    """Whether process `pid` runs. A zombie does not: a detached process killed with -9 stays
    one when nothing reaps orphans (an init that does not, as in some containers)."""
    try:
        os.kill(int(pid), 0)
    except (TypeError, ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{int(pid)}/stat") as fh:
            stat = fh.read()
    except OSError:
        return True  # no /proc (macOS): the signal's answer is all there is
    return stat[stat.rfind(")") + 2:stat.rfind(")") + 3] not in ("Z", "X")
