"""`strangler canary ROUTE --to BACKEND`: a stepped rollout with a gate and rollback.

The loop lives in `rollout.canary`, the gate math in `rollout.gate`; this module parses the
human units, connects to the running router, and reports. Exit codes: 0 promoted,
3 rolled back (the gate was not met, or aborted from the dashboard) or inconclusive (too
little traffic: weights left where they are), 130 interrupted (weights left as they were).
A canary is a foreground process; `strangler rollout start` is the same with a controller
that outlives the terminal (cli/rollouts.py). The loop publishes its state for the dashboard and takes its
pause/resume/abort requests (`RolloutFiles`, router/rollouts.py).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from cli.errors import AdminRefused, CLIError, RouterUnreachable
from cli.ledger import ledger_path
from cli.output import err, guarded, print_json
from cli.routerapi import RouterAPI, find_router, snapshots
from cli.shift import actor
from rollout.canary import CanaryPlan, run_canary
from rollout.controller import RolloutError
from rollout.gate import Gate, Snapshot, parse_duration, parse_rate, parse_steps
from stack import state
from stack.model import part_present

app = typer.Typer()


class RouterControl:
    """`rollout.canary.Control` (and `rollout.controller.Control`) over a running router; notes
    go to the router's ledger."""

    def __init__(self, api: RouterAPI, *, ledger: Path | None, role: str = "canary") -> None:
        self.api = api
        self.ledger = ledger
        self.role = role  # in the ledger's actor: who moved the weight

    def snapshot(self, route: str) -> tuple[dict[str, int], dict[str, Snapshot]]:
        return snapshots(self.api.status(), route)

    def set_weight(self, route: str, backend: str, weight: int, reason: str) -> dict[str, int]:
        self.api.set_weight(route, backend, weight, reason, f"{actor()} ({self.role})")
        return self.snapshot(route)[0]

    def shadow_of(self, route: str) -> dict[str, Any] | None:
        entry = next((r for r in self.api.routes()["routes"] if r["name"] == route), None)
        return None if entry is None else entry.get("shadow")

    def set_header_route(self, route: str, rule: dict[str, str], reason: str) -> None:
        self._change(route, "header-routes", {**rule, "reason": reason})

    def clear_header_route(self, route: str, name: str, reason: str) -> None:
        self._change(route, "header-routes", {"name": name, "clear": True, "reason": reason})

    def set_mirror(self, route: str, mirror: dict[str, Any], reason: str) -> None:
        self._change(route, "shadow", {**mirror, "reason": reason})

    def clear_mirror(self, route: str, reason: str) -> None:
        self._change(route, "shadow", {"clear": True, "reason": reason})

    def _change(self, route: str, what: str, body: dict[str, Any]) -> None:
        try:
            self.api.route_change(route, what, {**body, "actor": f"{actor()} ({self.role})"})
        except AdminRefused as exc:  # a refused change will not pass on a retry: say why and stop
            raise RolloutError(str(exc)) from None

    def note(self, route: str, weights: dict[str, int], reason: str) -> None:
        """A ledger line for a decision that changed no weight (promoted, interrupted)."""
        if self.ledger is None or not part_present("router"):
            return
        from router import ledger

        ledger.append(self.ledger, actor=actor(), route=route, old=weights, new=weights, reason=reason)


class RolloutFiles:
    """`rollout.canary.Board` over the files the router's dashboard reads (router/rollouts.py)."""

    def __init__(self, ledger: Path, route: str) -> None:
        from router import rollouts

        self._rollouts = rollouts
        self.folder = rollouts.folder(ledger)
        self.route = route

    def publish(self, doc: dict[str, Any]) -> None:
        self._rollouts.publish(self.folder, doc)

    def command(self) -> dict[str, Any] | None:
        return self._rollouts.take(self.folder, self.route)


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
    from cli.readgate import check_raise

    ledger = ledger_path(state.running_routes(routes))
    check_raise(route=route, backend=to, old=None, new=max(plan.steps), streams=streams,
                max_lag=max_lag, force=force, reason=reason, actor=actor(), ledger=ledger)
    url = find_router(router)
    if url is None:
        raise RouterUnreachable("a canary needs a running router: start the stack with `strangler up` "
                                "or give --router URL")
    with RouterAPI(url) as api:
        control = RouterControl(api, ledger=ledger)
        try:
            board = RolloutFiles(ledger, route) if part_present("router") else None
            result = run_canary(control, plan, say=lambda line: err.print(line, highlight=False, markup=False),
                                board=board)
        except ValueError as exc:
            raise CLIError(str(exc)) from exc
    if json_out:
        print_json(result.to_json())
    elif not (sys.stdout.isatty() and sys.stderr.isatty()):
        # the result for a pipe or a file; in a terminal the loop's last line already said it
        typer.echo(f"{result.outcome}: {result.why}")
    raise typer.Exit(result.exit_code)
