"""`strangler canary ROUTE --to BACKEND`: a stepped rollout with a gate and rollback.

The loop lives in `rollout.canary`, the gate math in `rollout.gate`; this module parses the
human units, connects to the running router, and reports. Exit codes: 0 promoted,
3 rolled back (the gate was not met, or aborted from the dashboard) or inconclusive (too
little traffic: weights left where they are), 130 interrupted (weights left as they were).
A canary is a foreground process; `strangler rollout start` is the same with a controller
that outlives the terminal (cli/rollouts.py). The loop publishes its state for the dashboard and takes its
pause/resume/abort requests (`control.routercontrol.RolloutFiles`).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from cli.errors import CLIError
from cli.output import err, guarded, print_json
from control.errors import RouterUnreachable
from control.ledger import actor, ledger_path
from control.readgate import check_raise
from control.routerapi import RouterAPI, find_router
from control.routercontrol import RolloutFiles, RouterControl
from rollout.canary import CanaryPlan, run_canary
from rollout.gate import Gate, parse_duration, parse_rate, parse_steps
from stack import state
from stack.model import part_present

app = typer.Typer()


def _parse(what: str, fn, text: str):  # type: ignore[no-untyped-def]
    try:
        return fn(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=what) from None


@app.command()
@guarded
def canary(
    route: Annotated[str, typer.Argument(help="Route to roll out on.")],
    to: Annotated[str, typer.Option("--to", help="Candidate backend.")],
    steps: Annotated[str, typer.Option(help="Increasing weights in percent.")] = "1,5,25,50,100",
    interval: Annotated[str, typer.Option(help="Minimum time per step (e.g. 30s, 2m).")] = "30s",
    max_error_rate: Annotated[str, typer.Option(help="Candidate error rate limit (e.g. 1%).")] = "1%",
    max_p99_ratio: Annotated[float, typer.Option(help="Candidate p99 ÷ current backend's p99 limit.")] = 1.5,
    min_requests: Annotated[int, typer.Option(help="Candidate requests needed per step before judging.")] = 100,
    p99_floor: Annotated[str, typer.Option(help="p99 below this always passes (loopback noise).")] = "10ms",
    max_wait: Annotated[str | None, typer.Option(help="Longest wait per step for min requests; then inconclusive: paused with the dashboard, else stopped with weights kept (default 10× interval).")] = None,
    router: Annotated[str | None, typer.Option("--router", envvar="STRANGLER_ROUTER_URL", help="Running router's base URL.")] = None,
    routes: Annotated[Path, typer.Option(help="Routes file of the running router (for the ledger).")] = Path("routes.yaml"),
    json_out: Annotated[bool, typer.Option("--json", help="One JSON document with every step.")] = False,
    max_lag: Annotated[float, typer.Option(help="Read gate: refuse rolling out toward a copy whose stream is further behind (seconds).")] = 5.0,
    force: Annotated[bool, typer.Option("--force", help="Roll out even though the read gate is closed (needs --reason; ledgered).")] = False,
    reason: Annotated[str, typer.Option(help="Why this canary (in each ledger line it causes); with --force, why the read gate is overridden.")] = "",
    streams: Annotated[str | None, typer.Option("--streams", envvar="STRANGLER_STREAMS", help="streams.yaml (it names ownership.yaml) for the read gate.")] = None,
) -> None:
    """Roll out step by step with a gate; promote, or roll back to 0 and exit 3.

    At each step it waits for the interval and the minimum request count, then compares
    the candidate with the current backend over the same window (error rate, p99).
    Ctrl-C leaves the weights as they are and says so (exit 130). Before the first step the
    read gate runs (as in `shift`): a candidate reading a copy whose stream is behind or whose
    last verify found differences is refused (exit 3) unless --force --reason.
    """
    interval_s = _parse("--interval", parse_duration, interval)
    try:
        gate = Gate(max_error_rate=_parse("--max-error-rate", parse_rate, max_error_rate),
                    max_p99_ratio=max_p99_ratio, min_requests=min_requests,
                    p99_floor_ms=_parse("--p99-floor", parse_duration, p99_floor) * 1000)
        plan = CanaryPlan(route=route, candidate=to, steps=tuple(_parse("--steps", parse_steps, steps)),
                          interval=interval_s, gate=gate,
                          max_wait=_parse("--max-wait", parse_duration, max_wait) if max_wait else 10 * interval_s,
                          poll=min(1.0, interval_s / 5), reason=reason)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    ledger = ledger_path(state.running_routes(routes))
    check_raise(route=route, backend=to, old=None, new=max(plan.steps), streams=streams,
                max_lag=max_lag, force=force, reason=reason, actor=actor(), ledger=ledger)
    say = lambda line: err.print(line, highlight=False, markup=False)  # noqa: E731
    url = find_router(router)
    plane = None
    if url is None and part_present("dataplane"):
        from control.planecontrol import PlaneControl, running_plane

        plane = running_plane()
    if url is None and plane is None:
        raise RouterUnreachable("a canary needs a running router or data plane: start the stack with "
                                "`strangler up` (or `strangler up --data-plane haproxy`), or give --router URL")
    try:
        board = RolloutFiles(ledger, route) if part_present("router") else None
        if plane is not None:  # the plane's own numbers, its routes file steered
            name, plane_routes, folder = plane
            say(f"canary on {name} (data plane): its access log {folder / 'access.jsonl'} is the gate's numbers")
            result = run_canary(PlaneControl(plane_routes, folder, ledger=ledger), plan, say=say, board=board)
        else:
            with RouterAPI(str(url)) as api:
                result = run_canary(RouterControl(api, ledger=ledger), plan, say=say, board=board)
    except ValueError as exc:
        raise CLIError(str(exc)) from exc
    if json_out:
        print_json(result.to_json())
    elif not (sys.stdout.isatty() and sys.stderr.isatty()):
        # the result for a pipe or a file; in a terminal the loop's last line already said it
        typer.echo(f"{result.outcome}: {result.why}")
    raise typer.Exit(result.exit_code)
