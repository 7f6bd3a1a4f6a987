"""The controls a canary drives over a data plane that follows its routes file (`strangler up
--data-plane nginx|haproxy`): `rollout.canary.Control` without a router.

Weights are read from and written to the routes file (`control.shift.shift_file`: validated,
written atomically, ledgered, as `strangler shift` without a router), and a change counts once
the plane says it serves it (`applied.json` in its folder, written by dataplane/follow.py).
The gate's numbers are the plane's own: its JSON access log, per route and backend
(dataplane/numbers.py), over the same window as with the router.
"""

from __future__ import annotations

import hashlib
import socket
import time
from pathlib import Path
from typing import Any

from control.errors import ControlError
from control.ledger import actor
from control.shift import shift_file
from dataplane.follow import read_applied
from dataplane.model import load_plan
from dataplane.numbers import AccessLog
from dataplane.run import ACCESS_LOG
from rollout.controller import RolloutError
from rollout.gate import Snapshot
from router import edit, ledger
from router.config import load_config
from router.errors import RouterError
from stack import state
from stack.model import plane_folder


class PlaneControl:
    """`rollout.canary.Control` and `rollout.controller.Control` over the plane `target`
    (nginx|haproxy) serving `routes` from `folder`. Every change goes through router/edit.py
    (validated, atomic, ledgered), then waits until the plane serves it."""

    def __init__(self, routes: Path, folder: Path, *, ledger: Path | None, role: str = "canary",
                 applied_timeout: float = 30.0, target: str = "nginx") -> None:
        self.routes, self.folder, self.ledger, self.role, self.target = routes, folder, ledger, role, target
        self.applied_timeout = applied_timeout
        # the log names a route by its place in the matching order, as the plane was rendered
        self.log = AccessLog(folder / ACCESS_LOG, tuple(r.name for r in load_plan(routes).rules))

    def snapshot(self, route: str) -> tuple[dict[str, int], dict[str, Snapshot]]:
        weights = dict(load_config(self.routes).route(route).weights)
        return weights, self.numbers(route, weights)

    def numbers(self, route: str, weights: dict[str, int]) -> dict[str, Snapshot]:
        """Each backend of `route` (every weighted one, and any other the log names) since the
        log began; the log is read on from where the last call stopped."""
        found = {name: Snapshot(0, 0) for name in weights}
        for (r, backend), c in self.log.counts().items():
            if r == route:
                found[backend] = Snapshot(c.requests, c.errors, c.cumulative())
        return found

    def set_weight(self, route: str, backend: str, weight: int, reason: str) -> dict[str, int]:
        _, new = shift_file(self.routes, route=route, backend=backend, weight=weight,
                            reason=f"{reason} ({self.role})")
        self.wait_applied()
        return new

    def shadow_of(self, route: str) -> dict[str, Any] | None:
        shadow = load_config(self.routes).route(route).shadow
        return None if shadow is None else {"to": shadow.to, "percent": shadow.percent,
                                             "methods": sorted(shadow.methods)}

    def set_header_route(self, route: str, rule: dict[str, str], reason: str) -> None:
        self._edit(edit.set_header_route, route=route, rule=rule, reason=reason)

    def clear_header_route(self, route: str, name: str, reason: str) -> None:
        self._edit(edit.clear_header_route, route=route, name=name, reason=reason)

    def set_mirror(self, route: str, mirror: dict[str, Any], reason: str) -> None:
        if self.target == "haproxy":  # its export cannot mirror (dataplane/haproxy.py): never silently
            raise RolloutError("HAProxy cannot mirror requests (it needs an SPOE agent): drop the "
                               "setMirrorRoute steps, or run the rollout with nginx or the router in front")
        self._edit(edit.set_shadow, route=route, shadow=mirror, reason=reason)

    def clear_mirror(self, route: str, reason: str) -> None:
        self._edit(edit.clear_shadow, route=route, reason=reason)

    def _edit(self, change: Any, *, reason: str, **fields: Any) -> None:
        try:
            change(self.routes, actor=f"{actor()} ({self.role})", reason=reason, **fields)
        except RouterError as exc:  # a refused change will not pass on a retry: say why and stop
            raise RolloutError(str(exc)) from None
        self.wait_applied()

    def wait_applied(self) -> None:
        """Until the plane serves the routes file as it is now (ControlError after the timeout)."""
        want = hashlib.sha256(self.routes.read_bytes()).hexdigest()  # as the follower names it
        deadline = time.monotonic() + self.applied_timeout
        while True:
            doc = read_applied(self.folder)
            if doc.get("sha256") == want:
                return
            if time.monotonic() > deadline:
                raise ControlError(f"the data plane has not applied routes file {want[:16]} within "
                                   f"{self.applied_timeout:.0f} s (it serves {str(doc.get('sha256'))[:16]}): "
                                   "see its log (`strangler logs nginx` or `strangler logs haproxy`)")
            time.sleep(0.05)

    def note(self, route: str, weights: dict[str, int], reason: str) -> None:
        """A ledger line for a decision that changed no weight (promoted, interrupted)."""
        if self.ledger is None:
            return
        ledger.append(self.ledger, actor=actor(), route=route, old=weights, new=weights, reason=reason)



def running_plane() -> tuple[str, Path, Path] | None:
    """(nginx|haproxy, its routes file, its folder) of the data plane `strangler up --data-plane`
    runs (`.strangler/run/stack.json`) if it answers on its port, or None (a stack stopped
    without `strangler down` leaves the file behind)."""
    doc = state.running_stack()
    plane = state.stack_process(doc, "dataplane") if doc else None
    if doc is None or plane is None or not doc.get("routes") or not _listening(plane.get("port")):
        return None
    return plane["name"], Path(doc["routes"]), plane_folder(state.state_dir(), plane["name"])


def _listening(port: Any) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", int(port)), timeout=1.0):
            return True
    except (OSError, TypeError, ValueError):
        return False
