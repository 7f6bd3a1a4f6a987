"""A persisted rollout's controller process and its one-screen view, for the commands.

`strangler rollout start` spawns the controller detached (`strangler rollout controller ROUTE`,
its own session): its pid file is `.strangler/run/rollout-<route>.json`, its log
`.strangler/logs/rollout-<route>.log`. The steering commands start a new one when the old one
is gone (`respawn`); it resumes from the persisted step. `describe` is the text of `rollout
status` and its `--watch`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from control.errors import RouterUnreachable
from control.ledger import ledger_path
from control.routerapi import RouterAPI, find_router
from control.routercontrol import RouterControl
from rollout.controller import ACTIVE, Store
from stack import state
from stack.model import part_present


def store_for(route: str, routes: Path) -> Store:
    from router import rollouts as files

    ledger = ledger_path(state.running_routes(routes))
    return Store(files.folder(ledger), route, ledger=ledger)


def pid_file(route: str) -> Path:
    return state.run_dir() / f"rollout-{route}.json"


def log_file(route: str) -> Path:
    return state.log_dir() / f"rollout-{route}.log"


def controller_alive(doc: dict[str, Any]) -> bool:
    from router import rollouts as files

    return files.alive(doc.get("pid"))


@dataclass(frozen=True)
class Target:
    """What a rollout steers: a running router (its URL), or the data plane `strangler up
    --data-plane` runs (nginx|haproxy, its routes file, its folder)."""

    router: str | None = None
    plane: tuple[str, Path, Path] | None = None

    def argv(self) -> list[str]:
        """How the detached controller is told (its --router or --plane)."""
        return ["--router", self.router] if self.router else ["--plane", self.plane[0] if self.plane else ""]


def find_target(router: str | None) -> Target | None:
    """The router (given, or the stack's), else the stack's data plane, else None."""
    url = find_router(router)
    if url is not None:
        return Target(router=url)
    if part_present("dataplane"):
        from control.planecontrol import running_plane

        plane = running_plane()
        if plane is not None:
            return Target(plane=plane)
    return None


@contextmanager
def controls(target: Target, *, ledger: Path | None, role: str) -> Iterator[Any]:
    """The rollout's Control over `target`: the router's admin API, or the plane's routes file
    and access log (control.planecontrol)."""
    if target.router is not None:
        with RouterAPI(target.router) as api:
            yield RouterControl(api, ledger=ledger, role=role)
        return
    from control.planecontrol import PlaneControl

    assert target.plane is not None
    name, routes, folder = target.plane
    yield PlaneControl(routes, folder, ledger=ledger, role=role, target=name)


def respawn(route: str, routes: Path, router: str | None, doc: dict[str, Any],
            say: Callable[[str], None]) -> int:
    """A new controller for a rollout whose controller is gone; it continues from the file."""
    target = find_target(router)
    if target is None:
        raise RouterUnreachable("the rollout's controller is gone and no router or data plane answers: "
                                "start the stack with `strangler up` or give --router URL")
    pid = spawn(route, routes, target)
    say(f"the controller was not running: started a new one (pid {pid}), resuming at step "
        f"{doc.get('step_index', 0) + 1}")
    return pid


def spawn(route: str, routes: Path, target: Target) -> int:
    """Start the controller of `route` detached from this terminal (its own session)."""
    log = log_file(route)
    with open(log, "ab") as handle:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "rollout", "controller", route,
             "--routes", str(routes.absolute()), *target.argv()],
            stdin=subprocess.DEVNULL, stdout=handle, stderr=subprocess.STDOUT,
            start_new_session=True, cwd=os.getcwd())
    return proc.pid


def wait_for(store: Store, predicate: Any, timeout: float) -> dict[str, Any] | None:
    deadline = time.monotonic() + timeout
    while True:
        doc = store.load()
        if doc is not None and predicate(doc):
            return doc
        if time.monotonic() > deadline:
            return doc
        time.sleep(0.1)


def owed(doc: dict[str, Any]) -> list[str]:
    """What an ended rollout still owes the router, one phrase each: the final weight it
    decided but the router did not take yet, and the header routes and mirror it set."""
    weight = doc.get("owed_weight")
    return ([f"weight {doc.get('candidate')} → {weight['weight']}%"] if weight else []) + managed_routes(doc)


def managed_routes(doc: dict[str, Any]) -> list[str]:
    """The header routes and the mirror the rollout has set on the router, one phrase each."""
    managed = doc.get("managed_routes") or {}
    out = []
    for name, rule in (managed.get("header") or {}).items():
        how = next((k for k in ("exact", "prefix", "regex") if k in rule), "exact")
        out.append(f"header route {name} ({rule.get('header')} {how} {rule.get(how)!r} → {rule.get('to')})")
    m = managed.get("mirror")
    if m:
        out.append(f"mirror {m.get('name')} ({m.get('percent'):g}% of {', '.join(m.get('methods') or [])} → {m.get('to')})")
    return out


def _ago(seconds: float) -> str:
    return f"{seconds:.0f}s"


def describe(doc: dict[str, Any], now: float, *, alive: bool) -> list[str]:
    """The lines of one rollout for `status` (and `--watch`)."""
    route, cand, st = doc.get("route"), doc.get("candidate"), doc.get("state")
    steps = doc.get("steps") or []
    head = f"{route} → {cand}: {st}"
    if st in ACTIVE:
        head += f" (controller pid {doc.get('pid')})" if alive else \
            f" — controller not running: `strangler rollout resume {route}` continues from this step"
    lines = [head]
    i = int(doc.get("step_index") or 0)
    if st in ACTIVE and i < len(steps):
        where = f"step {i + 1}/{len(steps)}: {steps[i]} · weight {doc.get('weight') if doc.get('weight') is not None else '–'}%"
        if doc.get("deadline") and st == "running":
            where += f" · {_ago(max(0.0, doc['deadline'] - now))} left"
        lines.append(where)
    waiting = doc.get("waiting")
    if waiting and st == "running":
        left = max(0.0, float(waiting["inconclusive_at"]) - now)
        lines.append(f"waiting for ≥ {waiting['need']} candidate requests (has {waiting['has']}) "
                     f"(pauses as inconclusive in {_ago(left)})")
    prog = doc.get("progress")
    if prog and st in ACTIVE:
        p99 = prog.get("candidate_p99_ms")
        cur = prog.get("current_p99_ms")
        lines.append(f"candidate: {prog['candidate_requests']} requests, {prog['candidate_errors']} errors, "
                     f"p99 {'n/a' if p99 is None else f'{p99:g} ms'} (current {'n/a' if cur is None else f'{cur:g} ms'})"
                     f" over {prog['window_s']:g}s · checks passed {prog['checks_passed']}/{prog['checks_needed']}")
    v = doc.get("verdict")
    if v and st in ACTIVE:
        lines.append(f"gate: {v.get('decision')} — {v.get('why')}")
    weight = doc.get("owed_weight")
    if weight:
        hint = "the controller retries" if alive else f"`strangler rollout resume {route}` sets it"
        lines.append(f"owed: {doc.get('candidate')} → {weight['weight']}% ({weight['label']}); the router "
                     f"has not taken it yet — {hint}")
    managed = managed_routes(doc)
    if managed:
        hint = "" if st in ACTIVE else f" — still set: `strangler rollout resume {route}` removes them"
        lines.append(f"managed routes: {'; '.join(managed)}{hint}")
    lines.append(f"failed checks: {doc.get('failed_checks', 0)} of {doc.get('threshold')} before rollback · "
                 f"limits: {doc.get('gate')}")
    if doc.get("pause_reason"):
        lines.append(f"paused: {doc['pause_reason']}")
    if st not in ACTIVE and doc.get("why"):
        lines.append(f"{st}: {doc['why']}")
    return lines
