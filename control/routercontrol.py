"""The controls a rollout loop drives, over a running router and its files.

`rollout.canary` and `rollout.controller` see a router through two small protocols (a
`Control`: snapshot, set a weight, note; a `Board`: publish state, take a command);
`RouterControl` is the first over the router's admin API (`control.routerapi`), with notes in
the router's ledger; `RolloutFiles` the second over the files the dashboard reads
(router/rollouts.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from control.errors import AdminRefused
from control.ledger import actor
from control.routerapi import RouterAPI, snapshots
from rollout.controller import RolloutError
from rollout.gate import Snapshot
from stack.model import part_present


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
