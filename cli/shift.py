"""`strangler shift ROUTE --to BACKEND --weight N`: move traffic, validated and ledgered.

With a router running (found as `control.routerapi.find_router` says) the change goes
through its admin API, else into the routes file (`control.shift`); the read gate
(`control.readgate`) sees the old weights first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.output import err, guarded, out, print_json
from control.ledger import actor, ledger_path
from control.readgate import check_raise
from control.routerapi import RouterAPI, find_router
from control.shift import shift_file, shift_live

app = typer.Typer()


def fmt(w: dict[str, int]) -> str:
    return " ".join(f"{k}={v}" for k, v in w.items())


@app.command()
@guarded
def shift(
    route: Annotated[str, typer.Argument(help="Route name (see `strangler routes show`).")],
    to: Annotated[str, typer.Option("--to", help="Backend (upstream) whose weight to set.")],
    weight: Annotated[int, typer.Option("--weight", min=0, max=100, help="New weight in percent; the other backend takes the rest.")],
    reason: Annotated[str, typer.Option(help="Why: goes into the ledger.")] = "manual shift",
    router: Annotated[str | None, typer.Option("--router", envvar="STRANGLER_ROUTER_URL", help="Running router's base URL (default: the one `up` started).")] = None,
    routes: Annotated[Path, typer.Option(help="Routes file to edit when no router runs.")] = Path("routes.yaml"),
    json_out: Annotated[bool, typer.Option("--json", help="One JSON document.")] = False,
    max_lag: Annotated[float, typer.Option(help="Read gate: refuse raising toward a copy whose stream is further behind (seconds).")] = 5.0,
    force: Annotated[bool, typer.Option("--force", help="Raise even though the read gate is closed (needs --reason; ledgered).")] = False,
    streams: Annotated[str | None, typer.Option("--streams", envvar="STRANGLER_STREAMS", help="streams.yaml (it names ownership.yaml) for the read gate.")] = None,
) -> None:
    """Set one backend's weight on a route; prints old → new.

    Raising the weight of a backend that reads a copy (a non-owner side in ownership.yaml)
    is refused (exit 3) while the stream feeding it is not running, is behind by more than
    --max-lag, or its last `strangler verify` found differences. Lowering is never gated.
    """
    def gate(old: dict[str, int]) -> None:
        check_raise(route=route, backend=to, old=old.get(to), new=weight, streams=streams,
                    max_lag=max_lag, force=force, reason=reason if reason != "manual shift" else "",
                    actor=actor(), ledger=ledger_path(routes))

    url = find_router(router)
    via = "file"
    if url is not None:
        with RouterAPI(url) as api:
            if api.alive() or router:
                old, new = shift_live(api, route=route, backend=to, weight=weight, reason=reason,
                                      before=gate)
                via = url
            else:
                err.print(f"no router answers at {url}; editing {routes} instead")
                url = None
    if url is None:
        old, new = shift_file(routes, route=route, backend=to, weight=weight, reason=reason,
                              before=gate)
    if json_out:
        print_json({"route": route, "old": old, "new": new, "via": via, "reason": reason})
        return
    out.print(f"{route}: {fmt(old)} → {fmt(new)}", highlight=False)
    err.print(f"(via {'the router at ' + via if via != 'file' else routes}; recorded in the ledger)")
