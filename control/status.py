"""What the migration looks like right now, as one document (`strangler status`).

`collect` reads the router's `/_strangler/overview` — `router.overview.overview()`, the
same document the dashboard (`/_strangler/ui`) streams — and adds what only the operator's
side can check, with the databases' DSNs: slot warnings, dual writes and each side's write
guards (cdc/health.py).

Per route: weights, the observed split, error rate and p50/p99 per backend, breaker state
and the shadow diff rate, from the router's cumulative status. `summarize` is pure (status
document in, summary out) so it is tested without a router; with a previous document the
numbers cover only the time between the two (what `--watch` shows), otherwise everything
since the router started.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from control.routerapi import RouterAPI, backend_stats, route_entries, snapshots
from rollout.gate import Snapshot, Window, window
from stack import state


def _breaker(entry: dict[str, Any], backend: str, stats: dict[str, Any],
             doc_breakers: Any = None) -> str | None:
    if "breaker" in stats:
        b = stats["breaker"]
        return str(b.get("state") if isinstance(b, dict) else b)
    breakers = entry.get("breakers") or doc_breakers
    if isinstance(breakers, dict) and backend in breakers:
        b = breakers[backend]
        return str(b.get("state") if isinstance(b, dict) else b)
    return None


def _shadow(entry: dict[str, Any], prev: dict[str, Any] | None) -> dict[str, Any] | None:
    shadow = entry.get("shadow")
    if not isinstance(shadow, dict):
        return None
    keys = ("compared", "differing", "dropped")
    now = {k: int(shadow.get(k, 0) or 0) for k in keys}
    if prev and isinstance(prev.get("shadow"), dict) and int(prev["shadow"].get("compared", 0) or 0) <= now["compared"]:
        now = {k: now[k] - int(prev["shadow"].get(k, 0) or 0) for k in keys}
    doc: dict[str, Any] = {**now, "diff_rate": now["differing"] / now["compared"] if now["compared"] else 0.0}
    for extra in ("to", "noise", "noise_rate", "net_diff_rate", "diff_rate_net"):
        if extra in shadow:
            doc[extra] = shadow[extra]
    return doc


def backend_rows(weights: dict[str, int], wins: dict[str, Window]) -> dict[str, dict[str, Any]]:
    """A route's backends as the status table shows them, from each one's window of numbers."""
    total = sum(w.requests for w in wins.values())
    return {b: {"weight": weights.get(b, 0), "requests": w.requests, "share": w.requests / total if total else 0.0,
                "errors": w.errors, "error_rate": w.error_rate, "p50_ms": w.p50 if w.buckets else None,
                "p99_ms": w.p99 if w.buckets else None, "breaker": None}
            for b, w in wins.items()}


def summarize(doc: dict[str, Any], previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """One JSON-able summary of a router status document (optionally since `previous`)."""
    routes = []
    prev_entries = route_entries(previous) if previous else {}
    for name, entry in route_entries(doc).items():
        weights, snaps = snapshots(doc, name)
        before: dict[str, Snapshot] = snapshots(previous, name)[1] if name in prev_entries and previous else {}
        stats = backend_stats(entry)
        wins = {b: window(before.get(b), s) for b, s in snaps.items()}
        total = sum(w.requests for w in wins.values())
        backends = backend_rows(weights, wins)
        for b, row in backends.items():
            if not wins[b].buckets:
                row["p50_ms"], row["p99_ms"] = stats.get(b, {}).get("p50_ms"), stats.get(b, {}).get("p99_ms")
            row["breaker"] = _breaker(entry, b, stats.get(b, {}), doc.get("breakers"))
        limited = int(entry.get("rate_limited") or 0)  # 429s (over the window, if one)
        if name in prev_entries:
            limited = max(0, limited - int(prev_entries[name].get("rate_limited") or 0))
        routes.append({"route": name, "weights": weights, "requests": total, "backends": backends,
                       "shadow": _shadow(entry, prev_entries.get(name)), "rate_limited": limited})
    config: dict[str, Any] = doc["config"] if isinstance(doc.get("config"), dict) else {}
    return {"routes": routes, "config": {"source": config.get("source"),
                                         "last_reload": config.get("last_reload")}}


def stream_status(folder: Path | None = None) -> tuple[list[dict[str, Any]], str | None]:
    """Per CDC stream lag and dead letters, from the files running streams write about once a
    second (`.strangler/cdc/<stream>.json`, see cdc/metrics.py): the router's reader, which
    the dashboard and `/_strangler/overview` use too."""
    from router.overview import stream_status as read

    return read(folder or state.state_dir() / "cdc")


def with_slot_warnings(streams: list[dict[str, Any]], warnings: dict[str, str]) -> list[dict[str, Any]]:
    """Attach live slot warnings; a stopped stream's slot is the one most at risk, so a warned
    stream without a metrics file is listed too."""
    by_name = {str(s.get("stream")): s for s in streams}
    for name, warning in warnings.items():
        row = by_name.get(name)
        if row is None:
            row = {"stream": name, "state": "not running"}
            streams.append(row)
        row["warning"] = warning
    return streams


def collect(api: RouterAPI, previous: dict[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The router's overview (router/overview.py: the document the dashboard streams) as the
    status table shows it, plus what only the operator's side checks: slot warnings, dual writes and the
    databases' write guards (they need the databases' DSNs)."""
    view = api.overview()
    doc = view["status"]
    summary = summarize(doc, previous)
    summary["router"] = api.base_url
    summary["rollouts"] = view.get("rollouts", [])
    add_operator_side(summary, view.get("streams", []), view.get("streams_note"))
    return doc, summary


def add_operator_side(summary: dict[str, Any], streams: list[dict[str, Any]], note: str | None) -> None:
    """CDC streams with slot warnings, dual writes and the databases' write guards: what the
    operator's side checks with the databases' DSNs, whatever serves the requests."""
    from cdc.health import dual_writes, ownership_status, slot_warnings  # lazily: the CDC engine

    summary["streams"] = with_slot_warnings(streams, slot_warnings())
    summary["dual_writes"] = dual_writes()
    summary["ownership"] = ownership_status()
    if note and not summary["streams"]:
        summary["note"] = note
