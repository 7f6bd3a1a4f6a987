"""One document of what the migration looks like now: what `strangler status` and the dashboard show.

Place in the flow: `overview()` gathers, in the router's process, the admin status document
(weights, per-backend counters, breakers, shadow tallies, ownership), the CDC streams' metrics
files (`<state>/cdc/<stream>.json`, written by cdc/metrics.py), the rollouts the canary
publishes (router/rollouts.py), who owns each ownership group's tables, and the ledger's tail.
`GET /_strangler/overview` answers it once (what `strangler status` reads);
`GET /_strangler/events` sends it as Server-Sent Events, each with `window`: the split and
error counts since the previous event (`window()`), what the dashboard charts.

`<state>` is STRANGLER_STATE_DIR when set, else the ledger's folder, as in router/rollouts.py.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from router import ledger, rollouts
from router.metrics import quantile

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from router.types import RouterCore as Router

    Status = Callable[[], Awaitable[dict[str, Any]]]  # the admin API's status document

PAIRS = 5  # last differing shadow pairs shown per route (already redacted by the shadow)
LEDGER_TAIL = 30


def state_folder(ledger_path: Path) -> Path:
    explicit = os.environ.get(rollouts.STATE_ENV)
    return Path(explicit) if explicit else Path(ledger_path).parent


async def overview(router: Router, status_of: Status) -> dict[str, Any]:
    snap = router.snapshot
    assert snap is not None
    status = await status_of()
    config = snap.config
    state = state_folder(config.ledger_path)
    streams, note = stream_status(state / "cdc")
    return {
        "time": time.time(),
        "status": status,
        "shadow": {name: shadow(r.get("shadow")) for name, r in status["routes"].items()
                   if r.get("shadow")},
        "streams": streams, "streams_note": note,
        "rollouts": rollouts.read_all(rollouts.folder(config.ledger_path)),
        "owners": owners(config),
        "ledger": ledger.tail(config.ledger_path, LEDGER_TAIL),
    }


def shadow(st: dict[str, Any]) -> dict[str, Any]:
    """A route's shadow tallies with only its last few differing pairs."""
    out = {k: v for k, v in st.items() if k not in ("pairs", "noise_pairs")}
    out["pairs"] = list(st.get("pairs", []))[-PAIRS:]
    return out


def owners(config: Any) -> list[dict[str, Any]]:
    """Per ownership group: its owner, whether writes are held, and each side's tables."""
    own = config.ownership
    if own is None:
        return []
    return [{"group": g.name, "owner": g.owner, "held": g.held(),
             "tables": {side: list(s.tables) for side, s in g.sides.items()}}
            for g in own.groups.values()]


def window(now: dict[str, Any], before: dict[str, Any] | None) -> dict[str, Any]:
    """Per route, what each backend served between two status documents: requests, share,
    errors, p99 (the upper bound of its bucket); everything since start without `before`."""
    out: dict[str, Any] = {}
    for name, route in now["routes"].items():
        prev = (before or {}).get("routes", {}).get(name, {}).get("backends", {})
        backends = {}
        for b, s in route["backends"].items():
            p = prev.get(b) or {}
            if int(p.get("requests", 0)) > int(s["requests"]):
                p = {}  # the router restarted: its counters began again
            buckets = [a - int(c) for a, c in zip(s["buckets"], p.get("buckets") or [0] * len(s["buckets"]),
                                                  strict=True)]
            errors = sum(s["errors"].values()) - sum((p.get("errors") or {}).values())
            backends[b] = {"requests": s["requests"] - int(p.get("requests", 0)), "errors": errors,
                           "p99_ms": quantile(buckets, 0.99), "breaker": s.get("breaker", "closed"),
                           "weight": route["weights"].get(b, 0)}
        total = sum(v["requests"] for v in backends.values())
        for v in backends.values():
            v["share"] = v["requests"] / total if total else None
            v["error_rate"] = v["errors"] / v["requests"] if v["requests"] else None
        out[name] = {"requests": total, "weights": route["weights"], "backends": backends}
    return out


def stream_status(where: Path) -> tuple[list[dict[str, Any]], str | None]:
    """Per CDC stream: state, lag, events/s, dead letters, slot health, from the files running
    streams write about once a second (cdc/metrics.py); a file whose process is gone says so."""
    streams = []
    for path in sorted(where.glob("*.json")) if where.is_dir() else []:
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        running = bool(doc.get("pid")) and rollouts.alive(doc["pid"])
        state_text = str(doc.get("state", "?"))
        if not running and state_text not in ("stopped", "failed"):
            state_text = f"not running (last: {state_text})"
        streams.append({
            "stream": doc.get("stream", path.stem), "state": state_text,
            "lag_ms": doc.get("lag_ms"), "events_per_s": doc.get("events_per_s"),
            "events": doc.get("events"), "dead_letters": doc.get("dead_letters", 0),
            "wal_bytes_behind": doc.get("wal_bytes_behind"), "slot": doc.get("slot"),
            "error": doc.get("error") or None, "updated": doc.get("updated"),
        })
    return streams, None if streams else "no CDC stream has run from this state folder"
