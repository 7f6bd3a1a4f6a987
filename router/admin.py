"""The admin API under `/_strangler/` — never forwarded upstream.

    GET  /_strangler/healthz                 {"ok": true} once a config is loaded; no token, no data
    GET  /_strangler/status                  routes, weights, per-backend counters, latency
                                             buckets + p50/p99, breakers, shadow tallies, and
                                             "ownership": the file's sha256, each group's owner
                                             and hold, and per live worker the sha it applied
                                             and its writes in flight per group
    GET  /_strangler/routes                  the running routing table
    GET  /_strangler/metrics                 Prometheus text
    GET  /_strangler/ledger                  the last ledger entries
    GET  /_strangler/overview                status + CDC streams + rollouts + owners + ledger
                                             (router/overview.py: what `strangler status` reads)
    GET  /_strangler/events                  the overview as Server-Sent Events, once a second
    GET  /_strangler/ui                      the live dashboard (router/dashboard.py); the page
                                             holds no data, so it needs no token: it asks for one
    POST /_strangler/rollouts/<route>/<pause|resume|abort|promote>   a request to the running rollout
    POST /_strangler/routes/<route>/weights  {"backend", "weight", "reason"[, "actor"]}
    POST /_strangler/routes/<route>/header-routes
                                             {"name", "header", "exact"|"prefix"|"regex", "to",
                                             "reason"[, "actor"]} adds or replaces (by name) a
                                             header route; {"name", "clear": true, "reason"}
                                             removes it (router/headerroutes.py)
    POST /_strangler/routes/<route>/shadow   {"to", "percent"[, "methods"], "reason"[, "actor"]}
                                             sets the route's shadow; {"clear": true, "reason"}
                                             removes it
    POST /_strangler/reload                  re-read the routes file now

The three route changes go through router.edit: validated whole, written atomically, ledgered,
then reloaded here and in every sibling worker; a bad one is 422 with what to fix and leaves
the file as it was; one that changes nothing answers `"changed": false` and writes nothing.

Numbers are summed over all worker processes. Every endpoint but `healthz` needs
`Authorization: Bearer <token>` (constant-time compare): reads accept STRANGLER_ADMIN_READ_TOKEN
or STRANGLER_ADMIN_TOKEN, writes only STRANGLER_ADMIN_TOKEN. With no token configured for
a kind of call it is refused (403); with a wrong or missing token 401; a read token on a
write 403. The proxy hands over every request whose *normalised* path starts with
`/_strangler` in any letter case (`/api/../_strangler`, `//_strangler`, `/%5Fstrangler`), so
no spelling of it reaches an upstream; spellings other than the exact one are 404 here.

With `admin_listen: host:port` the admin API is served there alone (`AdminListener`, by the
same HTTP server as the public port, in every worker) and the public port answers every
spelling of `/_strangler` with 404 — health probes included; nothing is forwarded.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import json
import os
import signal
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from router import dashboard, edit, ledger, rollouts
from router.config import Config
from router.errors import BadRequest, ConfigError
from router.match import normalise_path
from router.metrics import BOUNDS_MS, prometheus, rollout_series, route_weights
from router.overview import overview

if TYPE_CHECKING:
    from router.types import Receive, Scope, Send
    from router.types import RouterCore as Router

TOKEN_ENV = "STRANGLER_ADMIN_TOKEN"
READ_TOKEN_ENV = "STRANGLER_ADMIN_READ_TOKEN"
PREFIX = "/_strangler"
SUPERVISOR_ENV = "STRANGLER_ROUTER_SUPERVISOR"
MAX_BODY = 64 * 1024
EXAMPLES = {  # what each route change takes; a bad body's 400/422 shows it
    "weights": '{"backend": "catalog", "weight": 10, "reason": "canary step"}',
    "header-routes": '{"name": "testers", "header": "X-Canary", "exact": "yes", "to": "catalog", '
                     '"reason": "testers first"} (or {"name": "testers", "clear": true, "reason": ...})',
    "shadow": '{"to": "catalog", "percent": 100, "methods": ["GET", "HEAD"], "reason": "compare"} '
              '(or {"clear": true, "reason": ...})',
}


class Admin:
    def __init__(self, router: Router) -> None:
        self.router = router
        self.apart = False  # an AdminListener serves the admin API: the public port hides it

    async def handle(self, scope: Scope, receive: Receive, send: Send, path: str,
                     *, listener: bool = False) -> None:
        """Serve one admin request; `path` is the normalised request path, `listener` whether
        it came in on the `admin_listen` listener."""
        if self.apart and not listener:
            return await _json(send, 404, {"error": "not_found", "detail": "not found"})
        method = scope["method"]
        bad_host = host_problem(scope)
        if bad_host is not None:
            return await _json(send, 400, {"error": "bad_request", "detail": bad_host})
        parts = _endpoint(path)
        if parts == ["healthz"] and method in ("GET", "HEAD"):
            return await _json(send, 200, {"ok": self.router.snapshot is not None})
        if parts == ["ui"] and method in ("GET", "HEAD"):
            return await dashboard.page(send)  # no data in it: every read it makes needs a token
        is_write = parts is not None and (
            (len(parts) == 3 and parts[0] == "routes" and parts[2] in EXAMPLES) or parts == ["reload"]
            or (len(parts) == 3 and parts[0] == "rollouts"))
        denied = self._authorise(scope, write=is_write)
        if denied is not None:
            return await _json(send, denied[0], {"error": "unauthorised", "detail": denied[1]},
                               [(b"www-authenticate", b"Bearer")] if denied[0] == 401 else [])
        if method in ("GET", "HEAD") and not is_write:
            if parts == ["status"]:
                return await _json(send, 200, await self.status())
            if parts == ["routes"]:
                return await _json(send, 200, self.routes())
            if parts == ["metrics"]:
                self.router.publish_breakers()
                snap = self.router.snapshot
                body = (prometheus(await self.router.metrics.fresh_aggregate())
                        + route_weights(snap.config.routes if snap else ())
                        + rollout_series(rollouts.read_all(rollouts.folder(snap.config.ledger_path))
                                         if snap else ())).encode()
                return await _send(send, 200, body, b"text/plain; version=0.0.4; charset=utf-8")
            if parts == ["ledger"]:
                snap = self.router.snapshot
                assert snap is not None
                return await _json(send, 200, ledger.tail(snap.config.ledger_path, 100))
            if parts == ["overview"]:
                return await _json(send, 200, await overview(self.router, self.status))
            if parts == ["events"]:
                return await dashboard.events(self.router, self.status, receive, send)
        if not is_write:
            return await _json(send, 404, {"error": "not_found", "detail": f"no admin endpoint {path}"})
        if method != "POST":
            return await _json(send, 405, {"error": "method_not_allowed", "detail": "use POST"})
        assert parts is not None
        if parts[0] == "rollouts":
            return await self._rollout_request(receive, send, route=parts[1], action=parts[2])
        if parts == ["reload"]:
            result = self.router.reloader.reload("admin")
            self._tell_siblings()
            return await _json(send, 200 if result["ok"] else 422, result)
        return await self._route_change(receive, send, route=parts[1], what=parts[2])

    async def _route_change(self, receive: Receive, send: Send, *, route: str, what: str) -> None:
        """`POST /_strangler/routes/<route>/<weights|header-routes|shadow>`: one change through
        router.edit (validated whole, atomic, ledgered), then reloaded here and in the siblings."""
        example = EXAMPLES[what]
        try:
            data = json.loads(await _read(receive) or b"{}")
            if not isinstance(data, dict):
                raise ValueError("not an object")
        except ValueError:
            return await _json(send, 400, {"error": "bad_json", "detail": f"send {example}"})
        if self.router.config_path is None:
            return await _json(send, 409, {"error": "no_routes_file", "detail":
                                           "this router was started without a routes file"})
        try:
            reason = data.pop("reason", "")
            actor = str(data.pop("actor", "admin-api"))
            if not isinstance(reason, str):
                raise ConfigError(f'"reason" must be a string — fix: send {example}')
            entry = await asyncio.to_thread(_change_of(what, data), self.router.config_path, route=route,
                                            actor=actor, reason=reason)
        except ConfigError as exc:
            return await _json(send, 422, {"error": "invalid_change", "detail": str(exc)})
        if entry is None:  # already so: nothing written, nothing to reload
            return await _json(send, 200, {"ok": True, "changed": False})
        self.router.reloader.reload("admin")
        self._tell_siblings()
        return await _json(send, 200, {"ok": True, "changed": True, "ledger": entry})

    async def _rollout_request(self, receive: Receive, send: Send, *, route: str, action: str) -> None:
        """A dashboard button: ask the rollout of `route` to pause, resume, abort or promote (ledgered)."""
        if action not in rollouts.ACTIONS:
            return await _json(send, 404, {"error": "not_found", "detail":
                                           f"no rollout action {action!r}: use {', '.join(rollouts.ACTIONS)}"})
        try:
            data = json.loads(await _read(receive) or b"{}")
            if not isinstance(data, dict):
                raise ValueError("not an object")
        except ValueError:
            return await _json(send, 400, {"error": "bad_json", "detail": 'send {"reason": str}'})
        snap = self.router.snapshot
        assert snap is not None
        where = rollouts.folder(snap.config.ledger_path)
        current = {d.get("route"): d for d in rollouts.read_all(where)}.get(route)
        if current is None or current.get("state") not in ("running", "paused"):
            return await _json(send, 409, {"error": "no_rollout", "detail":
                                           f"no rollout of {route!r} is running (start one with "
                                           f"`strangler rollout start {route} --to BACKEND`)"})
        if action == "promote" and current.get("kind") != "rollout":
            return await _json(send, 409, {"error": "not_promotable", "detail":
                                           f"the rollout of {route!r} is a foreground `strangler canary`: "
                                           "it promotes by its gate; pause, resume or abort it"})
        actor, reason = str(data.get("actor") or "dashboard"), str(data.get("reason") or "")
        requested = rollouts.request(where, route, action=action, actor=actor, reason=reason)
        entry = ledger.append_record(snap.config.ledger_path, {
            "kind": "rollout-control", "route": route, "action": action, "actor": actor,
            "reason": reason or f"{action} requested from the dashboard",
            "candidate": current.get("candidate"), "step": current.get("step")})
        return await _json(send, 202, {"ok": True, "request": requested, "ledger": entry})

    def _authorise(self, scope: Scope, *, write: bool) -> tuple[int, str] | None:
        admin = os.environ.get(TOKEN_ENV, "").encode()
        reader = os.environ.get(READ_TOKEN_ENV, "").encode()
        if write and not admin:
            return 403, f"admin writes are disabled: set {TOKEN_ENV} where the router runs"
        if not write and not (admin or reader):
            return 403, (f"admin reads are disabled: set {READ_TOKEN_ENV} (reads only) or "
                         f"{TOKEN_ENV} where the router runs")
        given = b""
        for k, v in scope["headers"]:
            if k == b"authorization":
                given = v
        scheme, _, value = given.partition(b" ")
        value = value.strip()
        if scheme.lower() != b"bearer" or not value:
            return 401, "missing bearer token"
        # Both compares always run: the time taken says nothing about which token is set.
        is_admin = bool(admin) & hmac.compare_digest(value, admin or b"\0")
        is_reader = bool(reader) & hmac.compare_digest(value, reader or b"\0")
        if is_admin or (is_reader and not write):
            return None
        if is_reader:
            return 403, f"this token may only read; writes need {TOKEN_ENV}"
        return 401, "wrong bearer token"

    def _tell_siblings(self) -> None:
        # With several workers, the supervisor forwards SIGHUP to all of them.
        pid = os.environ.get(SUPERVISOR_ENV)
        if pid and pid.isdigit():
            with contextlib.suppress(OSError):
                os.kill(int(pid), signal.SIGHUP)

    def routes(self) -> dict[str, Any]:
        snap = self.router.snapshot
        assert snap is not None
        config = snap.config
        return {
            "source": config.source, "sha256": config.sha256,
            "upstreams": {n: {"url": u.url, "connect_timeout": u.connect_timeout,
                              "read_timeout": u.read_timeout, "pool_size": u.pool_size}
                          for n, u in config.upstreams.items()},
            "routes": [{"name": r.name, "prefix": r.match.prefix, "exact": r.match.exact,
                        "methods": sorted(r.match.methods) if r.match.methods else None,
                        "host": r.match.host, "weights": r.weights, "candidate": r.candidate,
                        "fallback": r.fallback, "retries": r.retries, "identity": r.identity,
                        "writes": r.writes,
                        "shadow": {"to": r.shadow.to, "percent": r.shadow.percent,
                                   "methods": sorted(r.shadow.methods)} if r.shadow else None}
                       for r in config.routes],
        }

    async def status(self) -> dict[str, Any]:
        snap = self.router.snapshot
        assert snap is not None
        self.router.publish_breakers()
        agg = await self.router.metrics.fresh_aggregate()
        routes: dict[str, Any] = {}
        for r in snap.config.routes:
            backends = {}
            for name, _ in r.backends:
                s = agg["series"].get((r.name, name))
                backends[name] = _series(s)
            for (route, name), s in agg["series"].items():
                if route == r.name and name not in backends:
                    backends[name] = _series(s)  # e.g. the fallback
            for name, entry in backends.items():
                entry["breaker"] = agg["breakers"].get(name, {}).get("state", "closed")
            routes[r.name] = {"weights": r.weights, "writes": r.writes, "backends": backends,
                              "shadow": agg["shadow"].get(r.name),
                              "rate_limited": agg["rate_limited"].get(r.name, 0)}
        return {"config": {"source": snap.config.source, "sha256": snap.config.sha256,
                           "last_reload": self.router.reloader.status()},
                "ownership": _ownership(snap.config, agg["ownership_workers"]),
                "workers": agg["workers"], "in_flight": agg["in_flight"], "routes": routes, "breakers": agg["breakers"],
                "tracing": {"exporter": self.router.tracing.settings.exporter
                            if self.router.tracing.settings else "none", "spans": agg.get("tracing", {})},
                "latency_bounds_ms": list(BOUNDS_MS)}


class AdminListener:
    """The ASGI app of the `admin_listen` listener: the admin API, and 404 for anything else.
    Creating it takes the admin API off the public port of `router`."""

    def __init__(self, router: Router, admin: Admin) -> None:
        self.router, self.admin = router, admin
        admin.apart = True

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await receive()
            return await send({"type": "websocket.close", "code": 1003})
        if scope["type"] != "http":
            return  # the lifespan is the public app's
        if self.router.snapshot is None:  # the public server's lifespan has not finished yet
            return await _json(send, 503, {"error": "starting", "detail": "no config loaded yet"},
                               [(b"retry-after", b"1")])
        try:
            path = normalise_path(scope.get("raw_path") or scope["path"].encode())
        except BadRequest as exc:
            return await _json(send, exc.status, {"error": "bad_request", "detail": str(exc)})
        if not is_admin_path(path):
            return await _json(send, 404, {"error": "not_found", "detail": "this listener serves "
                                           f"{PREFIX}/ only (admin_listen); nothing is forwarded"})
        await self.admin.handle(scope, receive, send, path, listener=True)


def _change_of(what: str, data: dict[str, Any]) -> Callable[..., dict[str, Any] | None]:
    """The router.edit call a route change's body asks for (ConfigError: a body that asks nothing)."""
    clear = data.pop("clear", False)
    if clear is not False and clear is not True:
        raise ConfigError(f'"clear" must be true or false — fix: send {EXAMPLES[what]}')
    if what == "weights":
        backend, weight = data.pop("backend", None), data.pop("weight", None)
        if not isinstance(backend, str):
            raise ConfigError(f'"backend" must be a string — fix: send {EXAMPLES[what]}')
        return functools.partial(edit.set_weight, backend=backend, weight=weight)
    if what == "header-routes" and clear:
        name = data.pop("name", None)
        if not isinstance(name, str) or data:
            raise ConfigError('a clear takes "name" only — fix: send {"name": "testers", "clear": true, "reason": ...}')
        return functools.partial(edit.clear_header_route, name=name)
    if what == "header-routes":
        return functools.partial(edit.set_header_route, rule=data)
    if clear:
        if data:
            raise ConfigError(f"a clear takes no {', '.join(sorted(data))} — fix: send "
                              '{"clear": true, "reason": ...}')
        return edit.clear_shadow
    return functools.partial(edit.set_shadow, shadow=data)


def _ownership(config: Config, workers: list[dict[str, Any]]) -> dict[str, Any]:
    """What `strangler own` waits on: every live worker applied the file and has no write of
    the group in flight (a write admitted before the hold counts until its response ends)."""
    own = config.ownership
    groups = {}
    for g in (own.groups.values() if own is not None else ()):
        held = g.held()
        groups[g.name] = {"owner": g.owner, "held": held,
                          "retry_after": g.hold.retry_after() if held and g.hold else 0}
    return {"sha256": config.ownership_sha256, "groups": groups,
            "workers": sorted(workers, key=lambda w: w["pid"])}


def is_admin_path(path: str) -> bool:
    """True for every normalised path the admin API owns (any letter case: an upstream on a
    case-insensitive file system would serve `/_STRANGLER` as `/_strangler`)."""
    return path[:len(PREFIX)].lower() == PREFIX


def _endpoint(path: str) -> list[str] | None:
    """`/_strangler/routes/x/weights` → ["routes", "x", "weights"]; None for other spellings."""
    rest = path[len(PREFIX):].rstrip("/")
    if not path.startswith(PREFIX) or (rest and rest[0] != "/"):
        return None
    return rest.split("/")[1:]


def host_problem(scope: Scope) -> str | None:
    """Why the request's Host header breaks RFC 9112 §3.2 (None when it is fine)."""
    hosts = [v for k, v in scope["headers"] if k == b"host"]
    if len(hosts) > 1:
        return "more than one Host header (RFC 9112 §3.2)"
    if not hosts and scope.get("http_version") == "1.1":
        return "an HTTP/1.1 request needs a Host header (RFC 9112 §3.2)"
    return None


def _series(s: dict[str, Any] | None) -> dict[str, Any]:
    if s is None:
        return {"requests": 0, "errors": {}, "statuses": {}, "buckets": [0] * (len(BOUNDS_MS) + 1),
                "p50_ms": None, "p99_ms": None}
    return {k: s[k] for k in ("requests", "errors", "statuses", "buckets", "p50_ms", "p99_ms")}


async def _read(receive: Receive) -> bytes:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if len(body) > MAX_BODY or not message.get("more_body", False):
            return body


async def _json(send: Send, status: int, data: Any, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    await _send(send, status, json.dumps(data, default=str).encode(), b"application/json", extra)


async def _send(send: Send, status: int, body: bytes, ctype: bytes,
                extra: list[tuple[bytes, bytes]] | None = None) -> None:
    headers = [(b"content-type", ctype), (b"content-length", str(len(body)).encode()), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
