"""`strangler rollout start|status|promote|abort|pause|resume`: rollouts that outlive the terminal.

The engine is `rollout/` (spec, gate, controller); the controller's process and the status
text are `control/rollouts.py`. This module parses the flags or the `--spec` file, runs the
read gate, writes the rollout file and spawns its controller detached. The other commands
write a request the controller takes on its next poll (from any terminal, or the dashboard's
buttons), and start a new controller when the old one is gone — which then resumes from the
persisted step. Exit codes: 0 ok/promoted, 1 failed, 2 usage, 3 rolled back, aborted, or
(with `status --watch`) the rollout ended without promotion.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from cli.errors import CLIError
from cli.output import err, guarded, out, print_json
from control.errors import RouterUnreachable
from control.ledger import actor, append_entry, ledger_path
from control.readgate import check_raise
from control.rollouts import (
    controller_alive,
    controls,
    describe,
    find_target,
    log_file,
    owed,
    pid_file,
    respawn,
    spawn,
    store_for,
    wait_for,
)
from rollout.controller import ACTIVE, DONE, Controller, RolloutError, new_rollout
from rollout.gate import parse_duration
from rollout.spec import RolloutSpec, SpecError, Webhook, from_yaml_doc, gate_from, steps_from_flag
from stack import state

app = typer.Typer(help="Rollouts that outlive the terminal: start, watch, promote, pause, resume, abort.",
                  no_args_is_help=True)

RouterOpt = Annotated[str | None, typer.Option("--router", envvar="STRANGLER_ROUTER_URL",
                                               help="Running router's base URL.")]
RoutesOpt = Annotated[Path, typer.Option(help="Routes file of the running router (for the ledger).")]
ReasonOpt = Annotated[str, typer.Option(help="Why (goes into the ledger).")]


def say(line: str) -> None:
    err.print(line, highlight=False, markup=False)


def _spec_from(route: str | None, to: str | None, spec_file: Path | None, *, steps: str, interval: str,
               max_error_rate: str | None, max_p99_ratio: float | None, max_p99: str | None,
               min_requests: int | None, p99_floor: str | None, threshold: int | None,
               webhook: list[str], reason: str) -> RolloutSpec:
    try:
        if spec_file is not None:
            try:
                doc = yaml.safe_load(spec_file.read_text())
            except (OSError, yaml.YAMLError) as exc:
                raise SpecError(f"{spec_file}: cannot read it as YAML ({exc})") from None
            if isinstance(doc, dict):
                if route is not None:
                    doc["route"] = route
                if to is not None:
                    doc["to"] = to
                if reason:
                    doc["reason"] = reason
            return from_yaml_doc(doc, source=str(spec_file))
        if route is None or to is None:
            raise SpecError("give ROUTE and --to BACKEND, or --spec FILE")
        iv = parse_duration(interval)
        if iv <= 0:
            raise SpecError(f"--interval {interval}: give a positive duration, e.g. 30s")
        gate, thr = gate_from({"max_error_rate": max_error_rate, "max_p99_ratio": max_p99_ratio,
                               "max_p99": max_p99, "min_requests": min_requests, "p99_floor": p99_floor,
                               "threshold": threshold if threshold is not None else 2}, "--gate")
        hooks = []
        for i, text in enumerate(webhook):
            when, _, url = text.partition("=")
            if when not in ("pre", "post") or not url.startswith(("http://", "https://")):
                raise SpecError(f"--webhook {text!r}: give pre=URL or post=URL (an http(s) URL)")
            hooks.append(Webhook(name=f"{when}{i}", url=url, when=when))
        return RolloutSpec(route=route, candidate=to, steps=steps_from_flag(steps, interval=iv), gate=gate,
                           threshold=thr, webhooks=tuple(hooks), reason=reason)
    except ValueError as exc:  # SpecError included
        raise typer.BadParameter(str(exc)) from None


@app.command()
@guarded
def start(
    route: Annotated[str | None, typer.Argument(help="Route to roll out on (or in --spec).")] = None,
    to: Annotated[str | None, typer.Option("--to", help="Candidate backend.")] = None,
    spec_file: Annotated[Path | None, typer.Option("--spec", help="A rollout spec in YAML (steps, gate, webhooks).")] = None,
    steps: Annotated[str, typer.Option(help="Weights, each followed by an analysis; `approval`, `pause`, `pause:2m` between.")] = "10,50,100",
    interval: Annotated[str, typer.Option(help="One analysis check's window (e.g. 30s).")] = "30s",
    max_error_rate: Annotated[str | None, typer.Option(help="Candidate error rate limit (default 1%).")] = None,
    max_p99_ratio: Annotated[float | None, typer.Option(help="Candidate p99 ÷ current backend's p99 limit (default 1.5).")] = None,
    max_p99: Annotated[str | None, typer.Option(help="A fixed candidate p99 limit too (e.g. 250ms).")] = None,
    min_requests: Annotated[int | None, typer.Option(help="Candidate requests a check needs, else inconclusive (default 100).")] = None,
    p99_floor: Annotated[str | None, typer.Option(help="A p99 under this always passes (default 10ms).")] = None,
    threshold: Annotated[int | None, typer.Option(help="Failed checks before rollback (default 2).")] = None,
    webhook: Annotated[list[str] | None, typer.Option(help="pre=URL (before each check) or post=URL (after the analysis passed); repeatable.")] = None,
    reason: ReasonOpt = "",
    router: RouterOpt = None,
    routes: RoutesOpt = Path("routes.yaml"),
    max_lag: Annotated[float, typer.Option(help="Read gate: refuse rolling out toward a copy whose stream is further behind (seconds).")] = 5.0,
    force: Annotated[bool, typer.Option("--force", help="Roll out though the read gate is closed (needs --reason; ledgered).")] = False,
    streams: Annotated[str | None, typer.Option("--streams", envvar="STRANGLER_STREAMS", help="streams.yaml for the read gate.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the rollout document.")] = False,
) -> None:
    """Start a rollout and hand it to a detached controller; this command returns at once.

    Watch it with `strangler rollout status ROUTE --watch`; steer it from any terminal with
    promote, pause, resume, abort. Closing this terminal does not stop it.
    """
    spec = _spec_from(route, to, spec_file, steps=steps, interval=interval, max_error_rate=max_error_rate,
                      max_p99_ratio=max_p99_ratio, max_p99=max_p99, min_requests=min_requests,
                      p99_floor=p99_floor, threshold=threshold, webhook=webhook or [], reason=reason)
    store = store_for(spec.route, routes)
    old = store.load()
    if old is not None and old.get("state") in ACTIVE:
        if controller_alive(old):
            raise CLIError(f"a rollout of {spec.route} → {old.get('candidate')} is already {old['state']} "
                           f"(step {old.get('step')}/{len(old.get('steps') or [])}): watch it with "
                           f"`strangler rollout status {spec.route} --watch`, or stop it with "
                           f"`strangler rollout abort {spec.route}`")
        raise CLIError(f"a rollout of {spec.route} → {old.get('candidate')} was {old['state']} when its "
                       f"controller stopped: continue it with `strangler rollout resume {spec.route}`, "
                       f"or end it with `strangler rollout abort {spec.route}`")
    target = find_target(router)
    if target is None:
        raise RouterUnreachable("a rollout needs a running router or data plane: start the stack with "
                                "`strangler up` (or `strangler up --data-plane nginx`), or give --router URL")
    with controls(target, ledger=None, role="rollout") as control:
        weights, _ = control.snapshot(spec.route)
    if spec.candidate not in weights:
        raise CLIError(f"route {spec.route!r} has no backend {spec.candidate!r}; it has {', '.join(weights)}")
    if len(weights) < 2:
        raise CLIError(f"route {spec.route!r} has only {spec.candidate!r}: nothing to compare the candidate with")
    mirrors = [s for s in spec.steps if s.kind == "setMirrorRoute"]
    if mirrors and target.plane is not None and target.plane[0] == "haproxy":
        raise CLIError(f"{mirrors[0].label()}: HAProxy serves the stack and cannot mirror requests (it needs "
                       "an SPOE agent) — drop the setMirrorRoute steps, or roll out behind nginx or the router")
    if mirrors:
        with controls(target, ledger=None, role="rollout") as control:
            there = control.shadow_of(spec.route)
        if there is not None and there.get("to") != spec.candidate:
            raise CLIError(f"route {spec.route} already shadows {there.get('percent')}% to {there.get('to')} "
                           f"(its routes.yaml `shadow:`), not to {spec.candidate}: {mirrors[0].label()} would "
                           f"take that shadow over — drop the setMirrorRoute steps, or point the shadow at "
                           f"{spec.candidate}")

    top = max(s.weight or 0 for s in spec.steps)
    check_raise(route=spec.route, backend=spec.candidate, old=None, new=100 if top else 0, streams=streams,
                max_lag=max_lag, force=force, reason=reason, actor=actor(),
                ledger=store.ledger_path or ledger_path(state.running_routes(routes)))
    doc = new_rollout(spec, actor=actor(), now=time.time())
    store.save(doc)
    store.record({"kind": "rollout", "event": "started", "route": spec.route, "candidate": spec.candidate,
                  "rollout": doc["id"], "actor": actor(), "steps": doc["steps"],
                  "reason": reason or f"rollout of {spec.route} → {spec.candidate} started"})
    pid = spawn(spec.route, routes, target)
    doc = wait_for(store, lambda d: d.get("pid") == pid or d.get("state") not in ACTIVE, 60.0) or doc
    if doc.get("pid") != pid and doc.get("state") in ACTIVE:
        raise CLIError(f"the controller (pid {pid}) did not start: see {log_file(spec.route)}")
    if json_out:
        print_json(doc)
        return
    out.print(f"rollout {spec.route} → {spec.candidate} started: {' → '.join(doc['steps'])}", highlight=False)
    err.print(f"controller pid {pid}, log {log_file(spec.route)}; watch with "
              f"`strangler rollout status {spec.route} --watch`", highlight=False, markup=False)


@app.command(hidden=True)
def controller(route: str, routes: RoutesOpt = Path("routes.yaml"), router: RouterOpt = None,
               plane: Annotated[str | None, typer.Option("--plane", help="Steer the stack's data plane.")] = None) -> None:
    """The detached controller (started by `rollout start` / `resume`): runs until the rollout ends."""
    store = store_for(route, routes)
    target = find_target(None if plane else router)
    if target is None or (plane is not None and (target.plane is None or target.plane[0] != plane)):
        print(f"no {'data plane ' + plane if plane else 'router'} runs: nothing to steer", flush=True)
        raise typer.Exit(1)
    pid_path = pid_file(route)
    pid_path.write_text(json.dumps({"pid": os.getpid(), "route": route, "started": time.time(),
                                    "log": str(log_file(route))}))
    say = lambda line: print(time.strftime("%H:%M:%S ") + line, flush=True)  # noqa: E731
    try:
        with controls(target, ledger=None, role="rollout controller") as control:
            ctl = Controller(store, control, actor=f"{actor()} (rollout controller)", say=say)
            doc = ctl.run()
        say(f"controller done: {doc['state']}")
    except RolloutError as exc:
        say(f"controller not started: {exc}")
        raise typer.Exit(1) from None
    finally:
        try:
            if json.loads(pid_path.read_text()).get("pid") == os.getpid():
                pid_path.unlink()
        except (OSError, ValueError):
            pass


def _steer(action: str, route: str, reason: str, routes: Path, router: str | None, *, full: bool = False) -> None:
    store = store_for(route, routes)
    doc = store.load()
    if doc is None:
        raise CLIError(f"no rollout of {route!r}: start one with `strangler rollout start {route} --to BACKEND`")
    if doc.get("state") not in ACTIVE and owed(doc) and not controller_alive(doc):
        # ended, but its controller died before setting the final weight or removing its header
        # routes or mirror: a new one does it and exits
        pid = respawn(route, routes, router, doc, say)
        now = wait_for(store, lambda d: not owed(d), 60.0) or doc
        if owed(now):
            raise CLIError(f"the new controller (pid {pid}) has not done {'; '.join(owed(now))} "
                           f"yet: see {log_file(route)}")
        out.print(f"{route}: the rollout was already {doc.get('state')}; what it left set is undone",
                  highlight=False)
        return
    if doc.get("state") not in ACTIVE:
        raise CLIError(f"the rollout of {route} → {doc.get('candidate')} is already {doc.get('state')} "
                       f"({doc.get('why')}); start a new one with `strangler rollout start`")
    who = actor()
    alive = controller_alive(doc)
    if action == "resume" and doc.get("state") == "running" and not alive:
        # nothing to resume but the controller itself: a new one continues from the file
        pid = respawn(route, routes, router, doc, say)
        now = wait_for(store, lambda d: d.get("pid") == pid or d.get("state") not in ACTIVE, 60.0) or doc
        if now.get("pid") != pid and now.get("state") in ACTIVE:
            raise CLIError(f"the new controller (pid {pid}) did not start: see {log_file(route)}")
        out.print(f"{route}: resume → {now.get('state')} (controller pid {pid})", highlight=False)
        return
    asked = store.request(action, actor=who, reason=reason, full=full)
    if store.ledger_path is not None:
        append_entry(store.ledger_path, {"kind": "rollout-control", "route": route, "action": action,
                                         "actor": who, "candidate": doc.get("candidate"), "step": doc.get("step"),
                                         "reason": reason or f"{action} asked from the command line"})
    wait = 10.0
    if not alive:
        wait = 60.0  # a fresh process must import the CLI first: seconds on a busy machine
        respawn(route, routes, router, doc, say)
    now = wait_for(store, lambda d: (d.get("handled") or {}).get("time") == asked["time"], wait) or doc
    if (now.get("handled") or {}).get("time") != asked["time"]:
        raise CLIError(f"asked to {action}, but the controller has not taken the request in {wait:g} s: "
                       f"see {log_file(route)}")
    out.print(f"{route}: {action} → {now.get('state')}" + (f" ({now['pause_reason']})" if now.get("pause_reason") else "")
              + (f": {now['why']}" if now.get("state") in DONE and now.get("why") else ""), highlight=False)


@app.command()
@guarded
def promote(route: str, full: Annotated[bool, typer.Option("--full", help="Skip every remaining step: candidate → 100%.")] = False,
            reason: ReasonOpt = "", routes: RoutesOpt = Path("routes.yaml"), router: RouterOpt = None) -> None:
    """Go past the current step (a pause, an approval, an analysis); --full: straight to 100%."""
    _steer("promote", route, reason, routes, router, full=full)


@app.command()
@guarded
def abort(route: str, reason: ReasonOpt = "", routes: RoutesOpt = Path("routes.yaml"), router: RouterOpt = None) -> None:
    """Stop the rollout: the candidate goes to 0%."""
    _steer("abort", route, reason, routes, router)


@app.command()
@guarded
def pause(route: str, reason: ReasonOpt = "", routes: RoutesOpt = Path("routes.yaml"), router: RouterOpt = None) -> None:
    """Hold the rollout at its current weight until resumed."""
    _steer("pause", route, reason, routes, router)


@app.command()
@guarded
def resume(route: str, reason: ReasonOpt = "", routes: RoutesOpt = Path("routes.yaml"), router: RouterOpt = None) -> None:
    """Continue a paused rollout (an analysis starts a fresh window); restarts a gone controller."""
    _steer("resume", route, reason, routes, router)


@app.command()
@guarded
def status(
    route: Annotated[str | None, typer.Argument(help="One route's rollout (default: all).")] = None,
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Redraw every half second until it ends.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="The rollout document(s) (with --watch: one per line per change).")] = False,
    routes: RoutesOpt = Path("routes.yaml"),
) -> None:
    """Where each rollout is: step, countdown, candidate traffic so far, the gate's verdict."""
    from router import rollouts as files

    store = store_for(route or "-", routes)

    def current() -> list[dict[str, Any]]:
        docs = [d for d in files.read_all(store.folder) if d.get("kind") == "rollout"]
        if route is not None:
            docs = [d for d in docs if d.get("route") == route]
        for d in docs:
            gone = d.get("state") == "gone"  # read_all's word for a dead controller: say it our way
            if gone:
                d["state"] = _raw_state(store.folder, d)
            d["controller_alive"] = d.get("state") in ACTIVE and not gone
        return docs

    docs = current()
    if route is not None and not docs:
        raise CLIError(f"no rollout of {route!r}: start one with `strangler rollout start {route} --to BACKEND`")
    if not watch:
        if json_out:
            print_json(docs[0] if route is not None else docs)
            return
        if not docs:
            out.print("no rollout has run (start one with `strangler rollout start ROUTE --to BACKEND`)")
        for d in docs:
            out.print("\n".join(describe(d, time.time(), alive=d["controller_alive"])), highlight=False)
        return
    if route is None:
        raise typer.BadParameter("--watch follows one rollout: give its ROUTE")
    from rich.live import Live
    from rich.text import Text

    last = None
    try:
        with contextlib.ExitStack() as stack:
            live = None if json_out else stack.enter_context(Live(console=out, auto_refresh=False))
            while True:
                d = current()[0]
                if live is None:
                    text = json.dumps({k: v for k, v in d.items() if k != "updated"}, default=str)
                    if text != last:
                        typer.echo(json.dumps(d, default=str))
                        last = text
                else:
                    live.update(Text("\n".join(describe(d, time.time(), alive=d["controller_alive"]))),
                                refresh=True)
                if d.get("state") not in ACTIVE or not d["controller_alive"]:
                    break
                time.sleep(0.5)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    raise typer.Exit(0 if d.get("state") in ("promoted", "running", "paused") else 3)


def _raw_state(folder: Path, doc: dict[str, Any]) -> str:
    try:
        return str(json.loads((folder / f"{doc['route']}.json").read_text()).get("state"))
    except (OSError, ValueError):
        return "running"
