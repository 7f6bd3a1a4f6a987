"""`strangler shift ROUTE --to BACKEND --weight N`: move traffic, validated and ledgered.

With a router running (found as `cli.routerapi.find_router` says) the change goes through
its admin API, so it takes effect at once and the router ledgers it. Without one, the
routes file is edited with the router's own `router.edit.set_weight` (validated whole,
written atomically, ledgered); a router started later reads it.
"""

from __future__ import annotations

import getpass
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from cli.errors import AdminRefused, CLIError
from cli.output import err, guarded, out, print_json
from cli.routerapi import RouterAPI, find_router, route_entry, weights
from stack.model import require_parts

app = typer.Typer()


def actor() -> str:
    try:
        return f"{getpass.getuser()}@cli"
    except (KeyError, OSError):
        return "cli"


def fmt(w: dict[str, int]) -> str:
    return " ".join(f"{k}={v}" for k, v in w.items())


Before = Callable[[dict[str, int]], None]  # sees the old weights before the change (the read gate)


def shift_file(routes: Path, *, route: str, backend: str, weight: int, reason: str,
               before: Before | None = None) -> tuple[dict[str, int], dict[str, int]]:
    """Edit the routes file with the router's own validated, ledgered writer."""
    require_parts("router")
    from router.config import load_config
    from router.edit import set_weight
    from router.errors import RouterError

    if not routes.exists():
        raise CLIError(f"no routes file at {routes} and no router running; give --routes FILE")
    try:
        config = load_config(routes)
        r = config.route(route)
        old = dict(r.weights)
        if before is not None:
            before(old)
        set_weight(routes, route=route, backend=backend, weight=weight, actor=actor(), reason=reason)
        new = dict(load_config(routes).route(route).weights)
    except RouterError as exc:
        raise AdminRefused(str(exc)) from exc
    except KeyError as exc:
        raise AdminRefused(str(exc).strip("\"'")) from exc
    return old, new


def shift_live(api: RouterAPI, *, route: str, backend: str, weight: int, reason: str,
               before: Before | None = None) -> tuple[dict[str, int], dict[str, int]]:
    old = weights(route_entry(api.status(), route))
    if backend not in old:
        raise AdminRefused(f"route {route!r} has no backend {backend!r}; it has {', '.join(old)}")
    if before is not None:
        before(old)
    answer = api.set_weight(route, backend, weight, reason, actor())
    new = _weights_from_answer(answer) or weights(route_entry(api.status(), route))
    return old, new


def _weights_from_answer(answer: dict[str, Any]) -> dict[str, int] | None:
    for doc in (answer.get("ledger"), answer):
        if isinstance(doc, dict):
            for key in ("new", "weights"):
                if isinstance(doc.get(key), dict):
                    return {str(k): int(v) for k, v in doc[key].items()}
    return None


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
    from cli.ledger import ledger_path
    from cli.readgate import check_raise

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
