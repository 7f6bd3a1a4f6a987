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

from control.ledger import actor
from control.routerapi import RouterAPI, snapshots
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
