"""`strangler status` when nginx or HAProxy serves the stack (`strangler up --data-plane`): the
same summary as control/status.py's, from the plane's side.

Weights come from the routes file the plane follows, the numbers per route and backend from
its access log (dataplane/numbers.py, as the canary gate reads them), and what it serves from
its applied.json: the routes file's sha256, how it was applied, and the file it last refused.
Breakers and shadow diffs are the router's: none here.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from control.planecontrol import PlaneControl
from control.status import add_operator_side, backend_rows, stream_status
from dataplane.errors import ExportError
from dataplane.follow import read_applied
from rollout.gate import Snapshot, window
from router import rollouts
from router.config import load_config
from router.errors import RouterError
from router.match import match_order


def collect_plane(name: str, routes: Path, folder: Path,
                  previous: dict[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(this moment's numbers, the summary), the numbers since `previous` when given. The
    moment carries the log reader on, so `--watch` reads only what the plane logged since."""
    summary: dict[str, Any] = {"plane": {"name": name, "folder": str(folder), **applied(routes, folder)},
                               "routes": [], "config": {"source": str(routes), "last_reload": None}}
    snapshots: dict[str, dict[str, Snapshot]] = {}
    control: PlaneControl | None = (previous or {}).get("control")
    try:
        cfg = load_config(routes)
        names = tuple(r.name for r in match_order(cfg.routes))
        if control is None or control.log.route_names != names:  # the log names routes by position
            control = PlaneControl(routes, folder, ledger=None, target=name)
    except (RouterError, ExportError, OSError) as exc:  # the plane keeps its last good file
        summary["note"] = f"{routes} does not load ({exc}): {name} serves the last file it accepted"
        cfg = None
    if cfg is not None and control is not None:
        before_all = (previous or {}).get("snapshots", {})
        for route in cfg.routes:
            weights = dict(route.weights)
            snaps = snapshots[route.name] = control.numbers(route.name, weights)
            before = before_all.get(route.name, {})
            wins = {b: window(before.get(b), s) for b, s in snaps.items()}
            summary["routes"].append({"route": route.name, "weights": weights,
                                      "requests": sum(w.requests for w in wins.values()),
                                      "backends": backend_rows(weights, wins), "shadow": None, "rate_limited": 0})
        summary["rollouts"] = rollouts.read_all(rollouts.folder(cfg.ledger_path))
    streams, note = stream_status()
    add_operator_side(summary, streams, note)
    return {"snapshots": snapshots, "control": control}, summary


def applied(routes: Path, folder: Path) -> dict[str, Any]:
    """What the plane says it serves, and whether that is the routes file on disk."""
    doc = read_applied(folder)
    try:
        on_disk = hashlib.sha256(routes.read_bytes()).hexdigest()
    except OSError:
        on_disk = None
    return {"serves": doc.get("sha256"), "current": on_disk is not None and doc.get("sha256") == on_disk, "how": doc.get("how"),
            "refused": (doc.get("refused") or {}).get("error")}
