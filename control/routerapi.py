"""The operator's side of the router's admin API (`/_strangler/...`), and reading its status.

Place in the flow: `shift`, `canary`, `status`, `routes` and the demo talk to a running
router through `RouterAPI`; `snapshots()` turns the router's cumulative status document
into `rollout.gate.Snapshot`s, the one place that knows the status JSON's shape. httpx errors
are mapped here to `RouterUnreachable` / `AdminRefused`.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

import httpx

from control.errors import AdminRefused, RouterUnreachable
from rollout.gate import Snapshot, cumulative
from stack import state

ENV_ROUTER_URL = "STRANGLER_ROUTER_URL"
ENV_READ_TOKEN = "STRANGLER_ADMIN_READ_TOKEN"  # read-only admin token (status, routes, metrics)


def find_router(explicit: str | None = None) -> str | None:
    """The router URL: given, else ``STRANGLER_ROUTER_URL``, else what `up` started."""
    if explicit:
        return explicit.rstrip("/")
    env = os.environ.get(ENV_ROUTER_URL)
    if env:
        return env.rstrip("/")
    url = (state.running_stack() or {}).get("router_url")
    return str(url).rstrip("/") if url else None


class RouterAPI:
    """A small client for one router's admin API."""

    def __init__(self, base_url: str, *, token: str | None = None, timeout: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token if token is not None else state.admin_token()
        # Every admin call is authenticated; reads also take the read-only token.
        credential = self.token or os.environ.get(ENV_READ_TOKEN)
        headers = {"Authorization": f"Bearer {credential}"} if credential else {}
        self._client = httpx.Client(base_url=self.base_url, timeout=timeout, headers=headers)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> RouterAPI:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            resp = self._client.request(method, "/_strangler/" + path, **kwargs)
        except httpx.TransportError as exc:
            raise RouterUnreachable(
                f"no router answers at {self.base_url} ({exc.__class__.__name__}): start the stack "
                "with `strangler up`, or give its address with --router / STRANGLER_ROUTER_URL"
            ) from exc
        if resp.status_code in (401, 403):
            raise AdminRefused(
                f"the router at {self.base_url} refused the admin call ({resp.status_code}): "
                f"{_message(resp)}. Set STRANGLER_ADMIN_TOKEN to the router's admin token "
                "(`strangler up` keeps it in .strangler/admin-token), or for reads only "
                f"{ENV_READ_TOKEN} to its read token"
            )
        if resp.status_code >= 400:
            raise AdminRefused(f"the router refused: {_message(resp)} (HTTP {resp.status_code})")
        return resp

    def alive(self) -> bool:
        try:
            self._request("GET", "status")
        except (RouterUnreachable, AdminRefused):
            return False
        return True

    def status(self) -> dict[str, Any]:
        return dict(self._request("GET", "status").json())

    def overview(self) -> dict[str, Any]:
        """Status, CDC streams, rollouts, owners and the ledger's tail (router/overview.py)."""
        return dict(self._request("GET", "overview").json())

    def routes(self) -> dict[str, Any]:
        return dict(self._request("GET", "routes").json())

    def reload(self) -> dict[str, Any]:
        """Ask the router to re-read its files now (routes.yaml, ownership.yaml), every worker."""
        resp = self._request("POST", "reload")
        return dict(resp.json()) if resp.content else {}

    def set_weight(self, route: str, backend: str, weight: int, reason: str,
                   actor: str = "strangler-cli") -> dict[str, Any]:
        resp = self._request("POST", f"routes/{route}/weights",
                             json={"backend": backend, "weight": weight, "reason": reason,
                                   "actor": actor})
        return dict(resp.json()) if resp.content else {}


    def route_change(self, route: str, what: str, body: dict[str, Any]) -> dict[str, Any]:
        """`what`: header-routes or shadow (router/admin.py says what each body holds)."""
        resp = self._request("POST", f"routes/{route}/{what}", json=body)
        return dict(resp.json()) if resp.content else {}


def _message(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.text.strip()[:300] or resp.reason_phrase
    if isinstance(body, dict):
        for key in ("detail", "error", "message"):  # detail says what to do
            if body.get(key):
                return str(body[key])
    return json.dumps(body)[:300]


# -- reading the status document ------------------------------------------------------------

def route_entries(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Route name → its status entry, whether the router lists routes as a map or a list."""
    routes = doc.get("routes", {})
    if isinstance(routes, list):
        return {str(r.get("name")): r for r in routes if isinstance(r, dict)}
    return {str(k): v for k, v in routes.items() if isinstance(v, dict)}


def route_entry(doc: dict[str, Any], route: str) -> dict[str, Any]:
    entries = route_entries(doc)
    if route not in entries:
        raise AdminRefused(f"the router has no route {route!r}; it has: {', '.join(sorted(entries)) or 'none'}")
    return entries[route]


def weights(entry: dict[str, Any]) -> dict[str, int]:
    found = entry.get("weights")
    if isinstance(found, dict):
        return {str(k): int(v) for k, v in found.items()}
    backends = entry.get("backends", {})
    return {str(k): int(v.get("weight", 0)) for k, v in _backend_map(backends).items()}


def _backend_map(backends: Any) -> dict[str, dict[str, Any]]:
    if isinstance(backends, list):
        return {str(b.get("name")): b for b in backends if isinstance(b, dict)}
    if isinstance(backends, dict):
        return {str(k): v for k, v in backends.items() if isinstance(v, dict)}
    return {}


def backend_stats(entry: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return _backend_map(entry.get("backends", {}))


def error_count(stats: dict[str, Any]) -> int:
    errors = stats.get("errors", 0)
    if isinstance(errors, dict):
        return int(sum(int(v) for v in errors.values()))
    return int(errors or 0)


def _bound_ms(bound: Any, unit: str) -> float:
    if isinstance(bound, str) and bound.strip().lower() in ("+inf", "inf"):
        return math.inf
    value = float(bound)
    return value * 1000.0 if unit == "s" else value


def _router_bounds() -> tuple[float, ...] | None:
    try:
        from router.metrics import BOUNDS_MS
    except ImportError:
        return None
    return tuple(float(b) for b in BOUNDS_MS)


def histogram(stats: dict[str, Any], bounds: Any = None) -> tuple[tuple[float, int], ...]:
    """Cumulative (upper bound ms, count) pairs from a backend's status entry.

    Understands per-bucket count lists (with bounds in the entry, the document, or the
    router's own `BOUNDS_MS`, plus one overflow bucket), [le, count] pairs and {le: count}.
    """
    nested = stats.get("latency")
    latency: dict[str, Any] = nested if isinstance(nested, dict) else stats
    buckets = latency.get("buckets")
    if not buckets:
        return ()
    unit = "s" if latency.get("unit", "ms") in ("s", "seconds") else "ms"
    bounds = latency.get("bounds_ms") or stats.get("bounds_ms") or bounds
    if isinstance(buckets, list) and all(isinstance(b, int) for b in buckets):
        known = tuple(float(b) for b in bounds) if bounds else _router_bounds()
        if known is None:
            return ()
        edges = list(known) + [math.inf] * (len(buckets) - len(known))
        return cumulative(list(zip(edges, buckets, strict=False)))
    if isinstance(buckets, dict):
        pairs = [(_bound_ms(k, unit), int(v)) for k, v in buckets.items()]
    else:
        pairs = []
        for item in buckets:
            if isinstance(item, dict):
                pairs.append((_bound_ms(item.get("le"), unit), int(item.get("count", 0))))
            else:
                pairs.append((_bound_ms(item[0], unit), int(item[1])))
    pairs.sort()
    if latency.get("cumulative", False):
        return tuple(pairs)
    return cumulative(pairs)


def snapshots(doc: dict[str, Any], route: str) -> tuple[dict[str, int], dict[str, Snapshot]]:
    """(weights, backend → cumulative Snapshot) of one route in a status document."""
    entry = route_entry(doc, route)
    found = {}
    bounds = doc.get("bounds_ms") or doc.get("latency_bounds_ms")
    for name, stats in backend_stats(entry).items():
        found[name] = Snapshot(int(stats.get("requests", 0)), error_count(stats), histogram(stats, bounds))
    w = weights(entry)
    for name in w:
        found.setdefault(name, Snapshot(0, 0))
    return w, found
