"""Setting one backend's weight on a route, validated and ledgered (`strangler shift`).

With a router running the change goes through its admin API (`shift_live`), so it takes
effect at once and the router ledgers it. Without one, the routes file is edited with the
router's own `router.edit.set_weight` (`shift_file`: validated whole, written atomically,
ledgered); a router started later reads it. Either way `before` sees the old weights first:
the read gate (`control.readgate`) refuses there, before anything changes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from control.errors import AdminRefused, ControlError
from control.ledger import actor
from control.routerapi import RouterAPI, route_entry, weights
from stack.model import require_parts

Before = Callable[[dict[str, int]], None]  # sees the old weights before the change (the read gate)


def shift_file(routes: Path, *, route: str, backend: str, weight: int, reason: str,
               before: Before | None = None) -> tuple[dict[str, int], dict[str, int]]:
    """Edit the routes file with the router's own validated, ledgered writer."""
    require_parts("router")
    from router.config import load_config
    from router.edit import set_weight
    from router.errors import RouterError

    if not routes.exists():
        raise ControlError(f"no routes file at {routes} and no router running; give --routes FILE")
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
