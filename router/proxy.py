"""The router as a pure ASGI app, and the composition root that wires its parts.

Place in the flow: the HTTP server hands every request to `Router.__call__`. It reads the
current `Snapshot` once (so a reload never changes config mid-request) and runs a short
pipeline of named stages, each handing the next what it learned (a `Request`):

    read (`head.read`: refuse ambiguous heads) → match (`snapshot.table`) → origin
    (trusted proxies) → limits (rate limit 429, held writes 503, body size 413) → choose
    (a write's owner, else a matching header route, else `balance.choose`) → build (`head.upstream_tail`) → forward
    (`_forward`: the upstream's endpoints in turn, retries, the fallback; the exchange
    itself in `forward`, on the lean client in `client`) → respond (`forward.relay`)

A stage that ends the request raises `Answer` (the router's own JSON answer); whatever
happened, `__call__` writes the one access-log line. The parts (admin, identity, reload,
shadow) get this object as `router.types.RouterCore`, never importing this module.

Failure policy: connect failure → 502, timeout → 504, each with a short JSON body naming
the upstream and request id. Retries, replays on a stale pooled connection and fallback
apply only to requests without a body whose method the route counts as idempotent
(GET/HEAD/OPTIONS, PUT/DELETE by opt-in: `Route.retry_methods`), and only before any
response byte reached the client: a POST is never sent twice. Within one attempt another
endpoint of the same upstream (`router.targets`) takes a request the first could not:
any request when nothing was sent (refused, busy, TLS), an idempotent one otherwise.
`/_strangler/...` never goes upstream, however it is spelled (the check runs on the
normalised path, in any letter case): it is the admin API (`router.admin`).

Writes (issue 11): on a route with `writes: <group>`, POST/PUT/PATCH/DELETE go to the
upstream named like the group's owner (weights, cohorts and overrides decide reads only),
never fall back to another side, and get 503 `writes_held` + Retry-After while the group is
held for an ownership flip. Admitted writes are counted per group until their response ends
(`Metrics.inflight_writes`): `strangler own` waits for that count to reach 0.

Bounds: the route's `deadline` is shared by every attempt (retries and fallback), bodies over
`max_body_bytes` get 413, a full upstream 503 with Retry-After. Behind trusted proxies
(`forwarding`) the client, scheme and host are theirs; anonymous visitors of a split
route get a sticky cohort cookie.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from random import getrandbits
from time import monotonic, perf_counter
from typing import Any

from ownership import WRITE_METHODS, Group
from router import balance, headerroutes, health, ratelimit
from router.accesslog import AccessLog
from router.admin import Admin, is_admin_path
from router.client import Connection
from router.config import IDENTITY_SECRET_ENV, AnonymousCohort, Config, Route, load_config
from router.errors import BadRequest, ClientGone, RouterError, UpstreamCut, UpstreamError
from router.forward import RESP_SKIP, TOO_BIG, Outgoing, exchange, relay
from router.head import Head, request_line, upstream_tail
from router.head import read as read_head
from router.identity import IdentityBridge
from router.match import normalise_path
from router.metrics import Metrics
from router.ratelimit import Limiter, Verdict, client_key
from router.reload import Reloader
from router.shadow import ShadowMirror
from router.sharedbuckets import RedisBuckets
from router.state import Snapshot, build_snapshot
from router.targets import Target, TargetGroup
from router.tracing import RequestTrace, RouterTracing
from router.tunnel import EXTENSION, Tunnel, wants_websocket
from router.types import Message, Receive, Scope, Send

__all__ = ["Message", "Receive", "Router", "Scope", "Send"]

# Bounds (issue 15): answers that must end the connection, and a hint for 503s.
CLOSE = ((b"connection", b"close"),)
RETRY_AFTER = ((b"retry-after", b"1"),)
BOUND_ERRORS = {408: "body_timeout", 413: "body_too_large"}


class Router:
    """The ASGI application. Build with a routes file path (reloadable) or a `Config`."""

    def __init__(self, *, config_path: str | Path | None = None, config: Config | None = None,
                 metrics_dir: str | Path | None = None, leader: bool = True) -> None:
        if config_path is None and config is None:
            raise RouterError("Router needs config_path= (a routes.yaml) or config=")
        self.config_path = Path(config_path) if config_path else None
        self.snapshot: Snapshot | None = None
        self._initial = config
        self.metrics = Metrics(metrics_dir)
        self.limiter = Limiter.for_workers(metrics_dir)  # buckets shared by the workers
        self.replicas: RedisBuckets | None = None  # buckets shared by replicas (rate_limit_store)
        self.shadow = ShadowMirror(self)
        self.identity = IdentityBridge(self)
        self.admin = Admin(self)
        self.reloader = Reloader(self, leader=leader)
        self.access_log = AccessLog(False)
        self.tracing = RouterTracing(self)
        self._tasks: list[asyncio.Task[None]] = []
        self._started = False

    # --- lifecycle ----------------------------------------------------------------------
    async def startup(self) -> None:
        if self._started:
            return
        self._started = True
        config = self._initial or load_config(self.config_path)  # type: ignore[arg-type]
        self.install(config)
        # Listed among the workers (with the ownership file it applied) before it serves, then
        # a second look: a file replaced while this worker started (a hold being written) is
        # either seen now or reported as not applied yet, never missed by `strangler own`.
        self.metrics.flush(force=True)
        if self.config_path is not None:
            self.reloader.reload("start")
            self.metrics.flush(force=True)
        if any(r.identity for r in config.routes) and not os.environ.get(IDENTITY_SECRET_ENV):
            print(f"strangler router: warning: routes ask for identity but {IDENTITY_SECRET_ENV} "
                  "is not set; no identity header will be sent", file=sys.stderr, flush=True)
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._housekeeping()))
        if self.config_path is not None:
            self._tasks.append(loop.create_task(self.reloader.watch()))
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(signal.SIGHUP, self.reloader.on_sighup)
        if self.metrics.directory is not None:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                # A sibling worker serving a status read wants our numbers now.
                loop.add_signal_handler(signal.SIGUSR1, self._flush_now)

    def install(self, config: Config) -> None:
        """Swap in a validated config (one assignment; in-flight requests keep theirs)."""
        self.snapshot = build_snapshot(config, self.snapshot)
        self.metrics.applied_ownership(config.ownership_sha256,
                                       list(config.ownership.groups) if config.ownership else [])
        if config.access_log != getattr(self, "_log_target", None):
            self.access_log.close()
            self.access_log = AccessLog(config.access_log)
            self._log_target = config.access_log
        self.shadow.configure(config)
        self.tracing.configure(config)
        self._configure_replicas(config)

    def _configure_replicas(self, config: Config) -> None:
        """The replicas' bucket store, replaced only when `rate_limit_store` changed."""
        wanted = config.rate_limit_store
        current = self.replicas.settings if self.replicas is not None else None
        if wanted == current:
            return
        old, self.replicas = self.replicas, RedisBuckets(wanted) if wanted is not None else None
        if old is not None:
            with contextlib.suppress(RuntimeError):  # no loop (a config swapped in a test): nothing open
                asyncio.get_running_loop().create_task(old.close())

    async def shutdown(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        await self.shadow.stop()
        self.publish_breakers()
        if self.replicas is not None:
            await self.replicas.close()
        self.metrics.retire()
        self.access_log.close()
        if self.snapshot:
            for target in self.snapshot.targets():
                health.stop(target)
                target.pool.close()

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(0.2)
            self.access_log.flush()
            self.publish_breakers()
            self.metrics.flush()

    def _flush_now(self) -> None:
        self.publish_breakers()
        self.metrics.flush(force=True)

    def publish_breakers(self) -> None:
        """Breaker (and health) states into the metrics: one per endpoint, and for an
        upstream with several endpoints also its own (its best endpoint's state)."""
        if self.snapshot is not None:
            states = {}
            for name, group in self.snapshot.groups.items():
                for target in group.targets:
                    states[target.key] = target.state()
                if len(group.targets) > 1:
                    states[name] = _group_state(group, [states[t.key] for t in group.targets])
            if states != self.metrics.breakers:
                self.metrics.breakers = states
                self.metrics.dirty = True

    # --- ASGI ---------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """One request: refusals and admin first, then the proxy pipeline; logged once.
        (Lifespan and WebSocket scopes go to `_other`: one coroutine less per request.)"""
        if scope["type"] != "http":
            return await self._other(scope, receive, send)
        req = Request(scope["method"], scope.get("raw_path") or scope["path"].encode(), send)
        snap = self.snapshot
        if snap is None:
            await self.startup()
            snap = self.snapshot
        assert snap is not None
        try:
            try:
                req.path = normalise_path(req.raw_path)
            except BadRequest as exc:
                raise _refusal(exc) from None
            # After normalisation: no spelling of the admin prefix may reach an upstream.
            if req.path.startswith("/_") and is_admin_path(req.path):
                if _header(scope["headers"], b"upgrade") is not None:
                    raise Answer(400, "bad_request", "the admin API does not switch protocols (Upgrade)")
                await self.admin.handle(scope, receive, send, req.path)
                return
            metrics = self.metrics
            metrics.in_flight += 1
            try:
                await self._proxy(snap, req, scope, receive)
            finally:
                metrics.in_flight -= 1
                if req.write_group is not None:
                    metrics.write_done(req.write_group)
        except Answer as answer:
            await self._answer(req, answer)
        except UpstreamCut:
            self._log(req)
            if req.trace is not None:
                self.tracing.finish(req.trace)
            raise  # the server closes the client connection: the cut is visible
        if self.access_log.enabled:
            self._log(req)
        if req.trace is not None:
            self.tracing.finish(req.trace)

    async def _other(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "websocket":
            await receive()
            await send({"type": "websocket.close", "code": 1003})


    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except RouterError as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # --- the pipeline: read → match → limits → choose → forward → respond ---------------
    async def _proxy(self, snap: Snapshot, req: Request, scope: Scope, receive: Receive,
                     taken: Verdict | None = None) -> None:
        config = snap.config
        try:
            head = read_head(scope, config.max_header_bytes)
        except BadRequest as exc:
            raise _refusal(exc) from None
        req.id = head.request_id()
        route = snap.table.match(req.method, req.path, head.host.decode("latin-1") if head.host else None,
                                 scope["headers"])
        if route is None:
            raise Answer(404, "no_route", "no route matches this request")
        req.route = route.name
        peer = None
        if snap.trust.networks:
            peer = scope.get("client")  # the socket's, before trusted proxies rewrite it
            scheme, out_host, xff = self._origin(snap, head, scope)
        else:  # no trusted proxies (the default): the socket's peer and scheme
            client = scope.get("client")
            scheme, out_host, xff = scope.get("scheme", "http"), head.host, (client[0] if client else "unknown").encode()
        owner = None
        if taken is None and route.rate_limit is not None and self.replicas is not None:
            taken = await self._replica_take(self.replicas, route, head, scope)
            if self.snapshot is not snap and self.snapshot is not None:
                # Reloaded while Redis answered: decide the owner of a write on the config in
                # force now, with no await between that decision and its admission count.
                if peer is not None:
                    scope["client"] = peer
                return await self._proxy(self.snapshot, req, scope, receive, taken)
        if route.rate_limit is not None or route.writes is not None or head.cl is not None:
            owner = self._limits(config, req, route, head, scope, taken)
        if owner is not None:
            backend = owner
        else:
            backend, cohort = _choose(route, scope, head.cookie, config.anonymous_cohort, scheme)
            if cohort is not None:
                req.cohort = cohort
                req.send = _with_header(req.send, (b"set-cookie", cohort))
        has_body = head.has_body
        handover = None if head.upgrade is None else self._handover(route, head, scope, has_body)
        identity = None
        if route.identity:
            identity = await self.identity.header_for(snap, scope["headers"], head.cookie)
        shadow = route.shadow is not None and handover is None and self.shadow.wants(route, req.method)
        trace = self.tracing.begin(head.tp, req, scope, route, backend) if self.tracing.enabled else None
        # Replays (retries, a stale pooled connection, another endpoint after a failure that
        # may have reached the upstream, the fallback) only for methods the route's upstreams
        # treat as idempotent: a POST may have run before the upstream failed.
        out = Outgoing(
            line=request_line(req.method, req.path, scope.get("query_string")), host=head.host,
            tail=upstream_tail(head, request_id=req.id, xff=xff, scheme=scheme, host=out_host,
                               websocket=handover is not None, identity=identity, trace=trace),
            method=req.method, has_body=has_body, chunked=head.te is not None,
            replay=req.method in route.retry_methods and not has_body,
            deadline=monotonic() + route.deadline,  # retries and the fallback share it
            body_timeout=config.client.body_timeout, max_body=route.max_body_bytes,
            upgrade=handover is not None, capture=[] if shadow and has_body else None)
        await self._forward(snap, req, route, backend, owner is not None, out, receive, handover,
                            [] if shadow else None)

    def _origin(self, snap: Snapshot, head: Head, scope: Scope) -> tuple[str, bytes | None, bytes]:
        """Scheme, host and X-Forwarded-For to pass on: behind trusted proxies, theirs."""
        client = scope.get("client")
        peer = client[0] if client else "unknown"
        scheme: str = scope.get("scheme", "http")
        trust = snap.trust
        if trust.networks and head.anything_forwarded and trust.trusts(peer):
            address, told_scheme, told_host, xff = trust.origin(peer, head.xff, head.xfp, head.xfh,
                                                                head.forwarded)
            scope["client"] = (address, 0)  # cohorts, rate limits and logs see the client
            return told_scheme or scheme, told_host.encode() if told_host else head.host, xff
        return scheme, head.host, peer.encode()

    async def _replica_take(self, replicas: RedisBuckets, route: Route, head: Head, scope: Scope) -> Verdict:
        """A token from the replicas' shared bucket; when their store does not answer, from
        this machine's (on_error: local) or a 503 (on_error: refuse)."""
        limit = route.rate_limit
        assert limit is not None
        key = client_key(limit, scope, head.cookie, route.cohort_header, route.cohort_cookie)
        verdict = await self.limiter.check_replicas(replicas, route.name, limit, key)
        if verdict is not None:
            return verdict
        self.metrics.rate_limit_store_errors = replicas.errors
        self.metrics.dirty = True
        if replicas.settings.on_error == "refuse":
            raise Answer(503, "rate_limit_store_down", f"route {route.name} is rate limited across "
                         "replicas and their store (rate_limit_store) does not answer; retry shortly",
                         headers=RETRY_AFTER)
        return self.limiter.check(route.name, limit, key)

    def _limits(self, config: Config, req: Request, route: Route, head: Head, scope: Scope,
                taken: Verdict | None = None) -> str | None:
        """Rate limit (429), held writes (503), body size (413); the owner a write goes to."""
        limit = route.rate_limit
        if limit is not None:
            verdict = taken if taken is not None else self.limiter.check(route.name, limit, client_key(
                limit, scope, head.cookie, route.cohort_header, route.cohort_cookie))
            limit_headers = ratelimit.headers(route.name, limit, verdict)
            if not verdict.allowed:
                self.metrics.rate_limited[route.name] = self.metrics.rate_limited.get(route.name, 0) + 1
                self.metrics.dirty = True
                per = f"{limit.header.decode()} header" if limit.header else limit.key
                raise Answer(429, "rate_limited", f"route {route.name} allows {limit.spec} per {per} "
                             f"(burst {limit.burst}); retry in {max(1, math.ceil(verdict.retry_after))}s",
                             count=False, headers=limit_headers)
            req.send = _with_header(req.send, *limit_headers)
        owner = None
        if route.writes is not None and req.method in WRITE_METHODS:
            # Decided in the same event-loop step that read the snapshot (no await since): a
            # worker that reports a hold (or a new owner) has no write admitted under the old
            # file that is not counted in inflight_writes.
            assert config.ownership is not None  # parse_config checked the group
            group = config.ownership.groups[route.writes]
            if group.held():
                raise _held(route, group)
            owner = group.owner
            req.write_group = group.name
            self.metrics.write_admitted(group.name)
        max_body = route.max_body_bytes
        if head.cl is not None and max_body is not None and int(head.cl) > max_body:
            raise Answer(413, "body_too_large", f"the request body exceeds this route's "
                         f"max_body_bytes ({max_body})", headers=CLOSE)
        return owner

    @staticmethod
    def _handover(route: Route, head: Head, scope: Scope, has_body: bool) -> Callable[..., Any] | None:
        """WebSocket passthrough: only when the server can hand the socket over and the
        route allows it; any other Upgrade (h2c...) is dropped as hop-by-hop."""
        if head.upgrade is None or route.websocket is None or has_body or \
                not wants_websocket(head.connection, head.upgrade):
            return None
        handover: Callable[..., Any] | None = (scope.get("extensions") or {}).get(EXTENSION, {}).get("handover")
        return handover

    async def _forward(self, snap: Snapshot, req: Request, route: Route, backend: str, is_write: bool,
                       out: Outgoing, receive: Receive, handover: Callable[..., Any] | None,
                       capture: list[bytes] | None) -> None:
        """Attempts on the chosen upstream (its endpoints in turn), retries, then the fallback."""
        attempts = 1 + (route.retries if out.replay else 0)
        tried_fallback = False
        while True:
            group = snap.groups[backend]
            req.backend = backend
            targets = group.targets
            only = targets[0]  # one endpoint with a closed breaker: admitted, nothing to count
            target = only if len(targets) == 1 and only.breaker.state == "closed" else group.pick()
            if req.trace is not None:
                req.trace.attempt(backend, "open" if target is None else target.breaker.state)
            if target is None:
                error = UpstreamError(f"the circuit breaker of {backend} is open")
                error.kind, error.status = "breaker_open", 503
                self._observe(req, 503, "breaker_open")
            else:
                try:
                    try:
                        conn = await exchange(group.upstream, target, out, receive)
                    except (ClientGone, BadRequest, UpstreamError) as first:
                        conn, target = await self._failover(req, group, target, out, receive, first)
                except UpstreamError as exc:
                    error = exc
                    attempts -= 1
                    if attempts > 0 and exc.kind != "busy" and monotonic() < out.deadline:
                        continue
                else:
                    if handover is not None and conn.status == 101:
                        return await self._tunnel(conn, handover, route, backend, target.breaker,
                                                  snap.config, req)
                    return await self._respond(snap, req, route, conn, target, out, receive, capture)
            fallback = route.fallback if not is_write else None  # a write goes to the owner only
            out_of_time = monotonic() >= out.deadline
            if out.replay and fallback and fallback != backend and not tried_fallback and not out_of_time:
                tried_fallback = True
                backend = fallback
                attempts = 1
                continue
            if out_of_time:
                raise Answer(504, "deadline", f"route {route.name}'s deadline ({route.deadline}s) "
                             f"passed; last error: {error}", count=False)
            raise Answer(error.status, f"upstream_{error.kind}", str(error), count=False,
                         headers=RETRY_AFTER if error.status == 503 else ())

    async def _failover(self, req: Request, group: TargetGroup, target: Target, out: Outgoing,
                        receive: Receive, error: BaseException) -> tuple[Connection, Target]:
        """An attempt failed on `target`: another endpoint of the group gets it when the first
        could not take the request (any request, if nothing was sent; an idempotent one,
        whatever failed). Raises what the last endpoint raised."""
        tried: list[Target] = []
        while True:
            breaker = target.breaker
            if isinstance(error, ClientGone):
                breaker.record(True)  # not the upstream's fault
                raise Answer(None, "client_gone", "") from None
            if isinstance(error, BadRequest):  # the body was too large or stopped arriving
                breaker.record(True)
                raise Answer(error.status, BOUND_ERRORS.get(error.status, "refused"), str(error),
                             headers=CLOSE) from None
            assert isinstance(error, UpstreamError)
            if error.kind == "busy":
                breaker.release()  # never sent: says nothing about the endpoint
            else:
                breaker.record(False)
            self._observe(req, error.status, error.kind)
            if len(group.targets) == 1 or not (out.replay or not error.maybe_processed) or \
                    monotonic() >= out.deadline:
                raise error
            tried.append(target)
            other = group.pick(tried)
            if other is None:
                raise error
            target = other
            try:
                return await exchange(group.upstream, target, out, receive), target
            except (ClientGone, BadRequest, UpstreamError) as exc:
                error = exc

    async def _respond(self, snap: Snapshot, req: Request, route: Route, conn: Connection,
                       target: Target, out: Outgoing, receive: Receive,
                       capture: list[bytes] | None) -> None:
        """Relay the response; offer the pair to the shadow when one is wanted."""
        backend = req.backend
        assert backend is not None
        try:
            req.status = await relay(conn, receive, req.send, snap.config, backend, req.id,
                                     capture, target.breaker)
        except (ClientGone, UpstreamCut) as exc:
            req.status = conn.status
            req.error = "client_gone" if isinstance(exc, ClientGone) else "cut"
            self._observe(req, conn.status, req.error)
            if isinstance(exc, UpstreamCut):
                raise
            raise Answer(None, req.error, "") from None
        self._observe(req, req.status, None)
        if capture is not None and TOO_BIG not in capture and \
                (out.capture is None or TOO_BIG not in out.capture):
            body = None if out.capture is None else b"".join(out.capture)
            self.shadow.offer(route, snap, backend, req.method, out.line, out.tail, req.status,
                              conn.headers, capture, body, out.chunked)

    async def _tunnel(self, conn: Any, handover: Callable[..., Any], route: Route, backend: str,
                      breaker: Any, config: Config, req: Request) -> None:
        """The upstream switched protocols: answer 101, then relay bytes until a side closes."""
        breaker.record(True)
        assert route.websocket is not None
        tunnel = Tunnel(conn, route.websocket.idle_timeout)
        try:
            client = handover(_switching_head(conn.headers, config, backend, req.id, req.cohort), tunnel)
        except ClientGone:
            conn.close()
            return
        tunnel.start(client)
        req.status = 101
        self._observe(req, 101, None)  # counted once, at the handshake
        reason = await tunnel.run()
        req.error = "idle_timeout" if reason == "idle_timeout" else None

    # --- respond and log ----------------------------------------------------------------
    def _observe(self, req: Request, status: int, error: str | None) -> None:
        self.metrics.observe(req.route or "-", req.backend or "-", status,
                             (perf_counter() - req.started) * 1000, error)

    async def _answer(self, req: Request, answer: Answer) -> None:
        """The router's own answer (a refusal, a limit, an upstream error): a JSON body."""
        if answer.status is None:
            return  # the client left: nothing to send (a relay that began was logged)
        if not req.id:
            req.id = f"{getrandbits(128):032x}"
        req.status, req.error = answer.status, answer.error
        body = json.dumps({"error": answer.error, "detail": answer.detail, "upstream": req.backend,
                           "request_id": req.id}).encode()
        await req.send({"type": "http.response.start", "status": answer.status,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(body)).encode()),
                                    (b"x-request-id", req.id.encode()), *answer.headers]})
        await req.send({"type": "http.response.body", "body": body})
        if answer.count and req.route is not None:
            self._observe(req, answer.status, answer.error)

    def _log(self, req: Request) -> None:
        """The one access-log line of a request (none for the admin API or a silent client)."""
        if req.status is not None and self.access_log.enabled:
            self.access_log.write(request_id=req.id or "-", method=req.method,
                                  path=req.path or req.raw_path.decode("latin-1"),
                                  route=req.route, backend=req.backend,
                                  status=req.status, ms=(perf_counter() - req.started) * 1000,
                                  error=req.error)


class Request:
    """What the pipeline's stages learn about one request and hand on to the next.

    The class holds the defaults: a stage sets only what it learns."""

    path = ""  # normalised ("" until then)
    id = ""  # the request id ("" until one is read or made)
    route: str | None = None
    backend: str | None = None
    status: int | None = None  # what the client got (None: nothing to log)
    error: str | None = None
    write_group: str | None = None  # a write admitted on a `writes:` route
    cohort: bytes | None = None  # Set-Cookie of a new anonymous visitor's cohort
    trace: RequestTrace | None = None  # its spans, when tracing is on (router.tracing)

    def __init__(self, method: str, raw_path: bytes, send: Send) -> None:
        self.started = perf_counter()
        self.method = method
        self.raw_path = raw_path
        self.send = send  # with the headers a stage adds (rate limit, cohort cookie)


class Answer(Exception):
    """A stage ends the request with the router's own answer (status None: nothing to send)."""

    def __init__(self, status: int | None, error: str, detail: str, *, count: bool = True,
                 headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
        self.status, self.error, self.detail = status, error, detail
        self.count, self.headers = count, headers


def _refusal(exc: BadRequest) -> Answer:
    return Answer(exc.status, "bad_request" if exc.status == 400 else "refused", str(exc))


def _held(route: Route, group: Group) -> Answer:
    """503 while the group's ownership moves: nothing was forwarded, a retry is safe."""
    hold = group.hold
    assert hold is not None
    wait = hold.retry_after()
    why = f" ({hold.reason})" if hold.reason else ""
    return Answer(503, "writes_held", f"writes to route {route.name} are held: ownership of "
                  f"{group.name} is moving{why}; retry after {wait} s",
                  headers=((b"retry-after", str(wait).encode()),))


def _choose(route: Route, scope: Scope, cookie: bytes | None,
            anonymous: AnonymousCohort | None, scheme: str) -> tuple[str, bytes | None]:
    """The backend, and a Set-Cookie value when a new anonymous visitor gets a cohort."""
    backends = route.backends
    if route.header_routes:  # testers' header (a rollout's setHeaderRoute) beats cohorts and weights
        routed = headerroutes.choose(route.header_routes, lambda name: _header(scope["headers"], name.encode()))
        if routed is not None:
            return routed, None
    # An empty header or cookie counts as absent, as on nginx and HAProxy (dataplane/):
    # `X-User:` with nothing after it must not put every such client in one cohort.
    override = None
    if route.override_header is not None:
        override = _header(scope["headers"], route.override_header.encode()) or None
    if override is None and route.override_cookie is not None and cookie is not None:
        override = _cookie(cookie, route.override_cookie) or None
    if len(backends) == 1 and override is None:
        return backends[0][0], None
    key = None
    if route.cohort_header is not None:
        key = _header(scope["headers"], route.cohort_header.encode()) or None
    if key is None and route.cohort_cookie is not None and cookie is not None:
        key = _cookie(cookie, route.cohort_cookie) or None
    new_cohort = None
    if key is None and anonymous is not None:
        # Behind an ingress every anonymous visitor has the same address: give each a
        # sticky cohort of its own so a canary splits them like logged-in users.
        key = (_cookie(cookie, anonymous.cookie) or None) if cookie is not None else None
        if key is None and route.splits:
            key = f"{getrandbits(64):016x}"
            new_cohort = _cohort_cookie(anonymous, key, secure=scheme == "https")
    if key is None:
        client = scope.get("client")
        key = client[0] if client else ""
    return balance.choose(backends, salt=route.salt, key=key, override=override,
                          candidate=route.candidate), new_cohort


def _group_state(group: TargetGroup, states: list[dict[str, Any]]) -> dict[str, Any]:
    usable = [s for s, t in zip(states, group.targets, strict=True) if t.healthy] or states
    best = min(usable, key=lambda s: _BEST_FIRST.index(s["state"]))
    return {"state": best["state"], "consecutive_failures": min(s["consecutive_failures"] for s in usable),
            "opened": sum(s["opened"] for s in states), "endpoints": len(states),
            "healthy": sum(1 for t in group.targets if t.healthy)}


_BEST_FIRST = ("closed", "half_open", "open")


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    for k, v in headers:
        if k == name:
            return v.decode("latin-1")
    return None


def _cookie(cookie: bytes, name: str) -> str | None:
    wanted = name.encode()
    for part in cookie.split(b";"):
        k, sep, v = part.strip().partition(b"=")
        if sep and k == wanted:
            return v.decode("latin-1")
    return None


def _cohort_cookie(anonymous: AnonymousCohort, key: str, *, secure: bool) -> bytes:
    return (f"{anonymous.cookie}={key}; Path=/; Max-Age={anonymous.max_age}; HttpOnly; "
            f"SameSite=Lax{'; Secure' if secure else ''}").encode()


def _switching_head(upstream_headers: list[tuple[bytes, bytes]], config: Config, backend: str,
                    request_id: str, cohort: bytes | None) -> bytes:
    """The 101 for the client: the upstream's headers (Sec-WebSocket-*), hop-by-hop ones
    dropped except the two that say what the connection switched to."""
    parts = [b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\n"]
    parts += [b"%b: %b\r\n" % (n, v) for n, v in upstream_headers if n not in RESP_SKIP]
    if config.backend_header:
        parts.append(b"%b: %b\r\n" % (config.backend_header.encode(), backend.encode()))
    parts.append(b"x-request-id: %b\r\n" % request_id.encode())
    if cohort is not None:
        parts.append(b"set-cookie: %b\r\n" % cohort)
    parts.append(b"\r\n")
    return b"".join(parts)


def _with_header(send: Send, *headers: tuple[bytes, bytes]) -> Send:
    """`send` with more response headers (only for the requests that need them)."""
    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", ()), *headers]}
        await send(message)
    return sending
