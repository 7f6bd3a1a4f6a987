"""`strangler ledger`: the append-only history of routing and ownership changes, read back
(`control.ledger` finds, reads and appends it)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from cli.errors import CLIError
from cli.output import err, guarded, out, print_json
from control.ledger import ledger_path, read_ledger, route_names
from stack import state

app = typer.Typer()


def _compact(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict):
        return " ".join(f"{k}={_compact(v)}" for k, v in value.items())
    return str(value)


def describe_change(entry: dict[str, Any]) -> str:
    """'monolith=100 orders=0 → monolith=90 orders=10' from whatever the entry holds."""
    if entry.get("kind") == "ownership":
        text = f"own {entry.get('phase')}: {entry.get('from')} → {entry.get('to')}"
        if entry.get("hold_s") is not None:
            text += f" (hold {entry['hold_s']} s)"
        return text + (f" — {entry['why']}" if entry.get("why") else "")
    if entry.get("kind") == "gate-override":
        return f"gate overridden: {entry.get('gate')}"
    old, new = entry.get("old"), entry.get("new")
    if old is not None or new is not None:
        return f"{_compact(old)} → {_compact(new)}"
    return _compact(entry.get("change") or entry.get("action") or "")


@app.command()
@guarded
def ledger(
    route: Annotated[str | None, typer.Option("--route", help="Only this route's changes.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON document (a list of entries).")] = False,
    routes: Annotated[Path | None, typer.Option(
        help="Routes file whose ledger to read [default: the running stack's, else routes.yaml].")] = None,
    last: Annotated[int, typer.Option("--last", "-n", help="Only the last N entries (0 = all).")] = 0,
) -> None:
    """Show the history of routing and ownership changes: when, who, what, why."""
    routes = routes or state.running_routes(Path("routes.yaml"))
    path = ledger_path(routes)
    if route is not None:
        # a route of the file, or one the ledger remembers (since renamed or removed)
        known = list(dict.fromkeys(route_names(routes) + [
            str(e["route"]) for e in read_ledger(path) if e.get("route") not in (None, "*")]))
        if route not in known:
            raise CLIError(f"no route {route!r} in {routes} or its ledger; the routes are: "
                           + (", ".join(known) or "none yet"))
    entries = read_ledger(path, route=route)
    if last > 0:
        entries = entries[-last:]
    if json_out:
        print_json(entries)
        return
    if not entries:
        err.print(f"no changes recorded in {path}" + (f" for route {route}" if route else ""))
        return
    table = Table(box=None, pad_edge=False)
    for col in ("TIME", "ACTOR", "ROUTE", "CHANGE", "REASON"):
        table.add_column(col, overflow="fold")
    for e in entries:
        when = e.get("time") or e.get("ts") or e.get("at") or ""
        where = e.get("route") or (f"group {e['group']}" if e.get("group") else "")
        table.add_row(str(when), str(e.get("actor", "")), str(where),
                      describe_change(e), str(e.get("reason", "")))
    out.print(table)
