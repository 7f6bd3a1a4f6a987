"""The router as a pure ASGI app: match → choose → forward, streaming both ways.

Place in the flow: the ASGI server hands every request to `Router.__call__`. It reads the
current `Snapshot` once (so a reload never changes config mid-request), refuses ambiguous
requests (bad framing, oversized headers, smuggling paths), matches a route, picks a backend
(`balance.choose`), builds the upstream request head once (hop-by-hop headers stripped,
`X-Forwarded-*`, `X-Request-ID` and `traceparent` set, the identity header signed), and
hands the bytes to `forward` (the exchange itself, on the lean client in `client`).

Failure policy: connect failure → 502, timeout → 504, each with a short JSON body naming
the upstream and request id. Retries, replays on a stale pooled connection and fallback
apply only to requests without a body whose method the route counts as idempotent
(GET/HEAD/OPTIONS, PUT/DELETE by opt-in: `Route.retry_methods`), and only before any
response byte reached the client: a POST is never sent twice.
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
import random
import re
import signal
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from time import monotonic, perf_counter
from typing import Any

from ownership import WRITE_METHODS, Group
from router import balance, ratelimit
from router.accesslog import AccessLog
from router.admin import is_admin_path
from router.config import IDENTITY_SECRET_ENV, AnonymousCohort, Config, Route, load_config
from router.errors import BadRequest, ClientGone, RouterError, UpstreamCut, UpstreamError
from router.forward import HOP_BY_HOP, RESP_SKIP, TOO_BIG, exchange, relay
from router.match import normalise_path
from router.metrics import Metrics
from router.ratelimit import Limiter, client_key
from router.state import Snapshot, build_snapshot
from router.tracing import RouterTracing
from router.tunnel import EXTENSION, Tunnel, wants_websocket

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# Request headers the router drops and sets itself (or must never forward).
REQ_SKIP = HOP_BY_HOP | {b"host", b"content-length", b"x-forwarded-for", b"x-forwarded-proto",
                         b"x-forwarded-host", b"x-request-id", b"traceparent",
                         b"x-strangler-identity", b"expect", b"forwarded"}
IDENTITY_HEADER = b"x-strangler-identity"
# Bounds (issue 15): answers that must end the connection, and a hint for 503s.
CLOSE = ((b"connection", b"close"),)
RETRY_AFTER = ((b"retry-after", b"1"),)
BOUND_ERRORS = {408: "body_timeout", 413: "body_too_large"}
_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")


class Router:
    """The ASGI application. Build with a routes file path (reloadable) or a `Config`."""

    def __init__(self, *, config_path: str | Path | None = None, config: Config | None = None,
                 metrics_dir: str | Path | None = None, leader: bool = True) -> None:
        if config_path is None and config is None:
            raise RouterError("Router needs config_path= (a routes.yaml) or config=")
        from router.admin import Admin
        from router.identity import IdentityBridge
        from router.reload import Reloader
        from router.shadow import ShadowMirror

        self.config_path = Path(config_path) if config_path else None
        self.snapshot: Snapshot | None = None
        self._initial = config
        self.metrics = Metrics(metrics_dir)
        self.limiter = Limiter.for_workers(metrics_dir)  # buckets shared by the workers
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

    async def shutdown(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        await self.shadow.stop()
        self._publish_breakers()
        self.metrics.retire()
        self.access_log.close()
        self.tracing.stop()
        if self.snapshot:
            for pool in self.snapshot.pools.values():
                pool.close()

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(0.2)
            self.access_log.flush()
            self._publish_breakers()
            self.metrics.flush()

    def _flush_now(self) -> None:
        self._publish_breakers()
        self.metrics.flush(force=True)

    def _publish_breakers(self) -> None:
        if self.snapshot is not None:
            states = {n: b.snapshot() for n, b in self.snapshot.breakers.items()}
            if states != self.metrics.breakers:
                self.metrics.breakers = states
                self.metrics.dirty = True

    # --- ASGI ---------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            if self.snapshot is None:
                await self.startup()
            await self.handle(scope, receive, send)
        elif scope["type"] == "lifespan":
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

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = perf_counter()
        snap = self.snapshot
        assert snap is not None
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
        try:
            path = normalise_path(raw_path)
        except BadRequest as exc:
            return await self._refuse(send, exc.status, str(exc), started, scope["method"], raw_path)
        # After normalisation: no spelling of the admin prefix may reach an upstream.
        if path.startswith("/_") and is_admin_path(path):
            if _header(scope["headers"], b"upgrade") is not None:
                return await self._refuse(send, 400, "the admin API does not switch protocols "
                                          "(Upgrade)", started, scope["method"], raw_path)
            await self.admin.handle(scope, receive, send, path)
            return
        self.metrics.in_flight += 1
        # A write admitted on a `writes:` route names its group here until its response ends.
        ticket: list[str] | None = [] if scope["method"] in WRITE_METHODS else None
        try:
            await self._proxy(scope, receive, send, snap, raw_path, path, started, ticket)
        finally:
            self.metrics.in_flight -= 1
            if self.tracing.enabled:
                self.tracing.finish(scope)
            if ticket:
                self.metrics.write_done(ticket[0])

    async def _proxy(self, scope: Scope, receive: Receive, send: Send, snap: Snapshot,
                     raw_path: bytes, path: str, started: float, ticket: list[str] | None) -> None:
        config = snap.config
        method: str = scope["method"]

        # One pass over the request headers: pick out what the router needs, keep the rest.
        host = cl = te = conn_hdr = xff = xfp = xfh = forwarded = rid = tp = cookie = upgrade = None
        size = 0
        fwd: list[tuple[bytes, bytes]] = []
        for name, value in scope["headers"]:
            size += len(name) + len(value) + 4
            if name in REQ_SKIP:
                if name == b"host":
                    if host is not None:
                        return await self._refuse(send, 400, "more than one Host header (RFC 9112 §3.2)",
                                                  started, method, raw_path)
                    host = value
                elif name == b"content-length":
                    if cl is not None and cl != value:
                        return await self._refuse(send, 400, "conflicting Content-Length headers", started, method, raw_path)
                    cl = value
                elif name == b"transfer-encoding":
                    te = value if te is None else te + b"," + value
                elif name == b"connection":
                    conn_hdr = value if conn_hdr is None else conn_hdr + b"," + value
                elif name == b"x-forwarded-for":
                    xff = value if xff is None else xff + b", " + value
                elif name == b"x-forwarded-proto":
                    xfp = value if xfp is None else xfp + b", " + value
                elif name == b"x-forwarded-host":
                    xfh = value if xfh is None else xfh + b", " + value
                elif name == b"forwarded":
                    forwarded = value if forwarded is None else forwarded + b", " + value
                elif name == b"x-request-id":
                    rid = value
                elif name == b"traceparent":
                    tp = value
                elif name == b"upgrade":
                    upgrade = value
                continue
            if name == b"cookie":
                cookie = value if cookie is None else cookie + b"; " + value
            fwd.append((name, value))
        if size > config.max_header_bytes:
            return await self._refuse(send, 431, f"request headers exceed {config.max_header_bytes} bytes", started, method, raw_path)
        if te is not None and (cl is not None or te.strip().lower() != b"chunked"):
            return await self._refuse(send, 400, "Transfer-Encoding must be exactly 'chunked' and "
                                      "never combined with Content-Length", started, method, raw_path)
        if cl is not None and not cl.isdigit():
            return await self._refuse(send, 400, "Content-Length is not a number", started, method, raw_path)
        if conn_hdr is not None:
            named = {t.strip().lower() for t in conn_hdr.split(b",")} - {b"close", b"keep-alive", b""}
            if named:
                fwd = [(n, v) for n, v in fwd if n not in named]
        if host is None and scope.get("http_version") == "1.1":
            return await self._refuse(send, 400, "an HTTP/1.1 request needs a Host header "
                                      "(RFC 9112 §3.2)", started, method, raw_path)

        request_id = rid.decode() if rid is not None and _REQUEST_ID.match(rid) else f"{random.getrandbits(128):032x}"
        route = snap.table.match(method, path, host.decode("latin-1") if host else None, scope["headers"])
        if route is None:
            return await self._error(send, 404, "no_route", None, request_id, started, method, path, None,
                                     detail="no route matches this request")

        # Behind a load balancer: the client, scheme and host its trusted proxies report.
        client = scope.get("client")
        peer = client[0] if client else "unknown"
        scheme: str = scope.get("scheme", "http")
        out_host = host
        xff_out = peer.encode()
        trust = snap.trust
        if trust.networks and (xff or xfp or xfh or forwarded) and trust.trusts(peer):
            address, told_scheme, told_host, xff_out = trust.origin(peer, xff, xfp, xfh, forwarded)
            scope["client"] = (address, 0)  # cohorts, rate limits and logs see the client
            scheme = told_scheme or scheme
            out_host = told_host.encode() if told_host else host
        limit = route.rate_limit
        if limit is not None:
            verdict = self.limiter.check(route.name, limit, client_key(
                limit, scope, cookie, route.cohort_header, route.cohort_cookie))
            limit_headers = ratelimit.headers(route.name, limit, verdict)
            if not verdict.allowed:
                return await self._rate_limited(send, route, limit, verdict, limit_headers,
                                                request_id, started, method, path)
            send = _with_header(send, *limit_headers)
        owner = None
        if ticket is not None and route.writes is not None:
            # Decided in the same event-loop step that read `snap` (no await since): a worker
            # that reports a hold (or a new owner) has no write admitted under the old file
            # that is not counted in inflight_writes.
            assert config.ownership is not None  # parse_config checked the group
            group = config.ownership.groups[route.writes]
            if group.held():
                return await self._held(send, route, group, request_id, started, method, path)
            owner = backend = group.owner
            new_cohort = None
            ticket.append(group.name)
            self.metrics.write_admitted(group.name)
        else:
            backend, new_cohort = self._choose(route, scope, cookie, config.anonymous_cohort, scheme)
        if new_cohort is not None:
            send = _with_header(send, (b"set-cookie", new_cohort))
        # Everything after the Host line is the same whichever upstream answers.
        traceparent, trace, send = self.tracing.start(tp, send, scope, route, backend, new_cohort, started)
        parts = [b"".join((n, b": ", v, b"\r\n")) for n, v in fwd]
        parts += [b"x-forwarded-for: ", xff_out, b"\r\nx-forwarded-proto: ", scheme.encode(),
                  b"\r\nx-request-id: ", request_id.encode(), b"\r\ntraceparent: ", traceparent, b"\r\n"]
        if out_host is not None:
            parts += [b"x-forwarded-host: ", out_host, b"\r\n"]
        has_body = te is not None or (cl is not None and cl != b"0")
        max_body = route.max_body_bytes
        if cl is not None and max_body is not None and int(cl) > max_body:
            return await self._error(send, 413, "body_too_large", None, request_id, started, method,
                                     path, route.name, detail=f"the request body exceeds this "
                                     f"route's max_body_bytes ({max_body})", headers=CLOSE)
        # WebSocket passthrough: only when the server can hand the socket over and the
        # route allows it; any other Upgrade (h2c...) is dropped as hop-by-hop.
        handover = None
        if upgrade is not None and route.websocket is not None and not has_body and \
                wants_websocket(conn_hdr, upgrade):
            handover = (scope.get("extensions") or {}).get(EXTENSION, {}).get("handover")
            if handover is not None:
                parts.append(b"connection: upgrade\r\nupgrade: websocket\r\n")
        if te is not None:
            parts.append(b"transfer-encoding: chunked\r\n")
        elif cl is not None:
            parts += [b"content-length: ", cl, b"\r\n"]
        if route.identity:
            signed = await self.identity.header_for(snap, scope["headers"], cookie)
            if signed is not None:
                parts += [IDENTITY_HEADER, b": ", signed, b"\r\n"]
        parts.append(b"\r\n")
        tail = b"".join(parts)
        qs = scope.get("query_string")
        target = (path + "?" + qs.decode("latin-1")) if qs else path
        line = f"{method} {target} HTTP/1.1\r\nhost: ".encode("latin-1")

        shadow = route.shadow is not None and handover is None and self.shadow.wants(route, method)
        capture: list[bytes] | None = [] if shadow else None
        # Mirrored requests with a body (methods explicitly allowed) need the body again.
        req_capture: list[bytes] | None = [] if shadow and has_body else None
        # Replays (retries, a stale pooled connection, the fallback) only for methods the
        # route's upstreams treat as idempotent: a POST may have run before the upstream failed.
        retryable = method in route.retry_methods and not has_body
        attempts = 1 + (route.retries if retryable else 0)
        tried_fallback = False
        deadline = monotonic() + route.deadline  # retries and the fallback share it
        body_timeout = config.client.body_timeout
        while True:
            upstream = config.upstreams[backend]
            breaker = snap.breakers[backend]
            if trace is not None:
                trace.attempt(backend, breaker.state)
            if not breaker.allow():
                error = UpstreamError(f"the circuit breaker of {backend} is open")
                error.kind = "breaker_open"
                error.status = 503
                self.metrics.observe(route.name, backend, 503, (perf_counter() - started) * 1000, "breaker_open")
            else:
                try:
                    conn = await exchange(upstream, snap.pools[backend], line, host, tail,
                                                method, has_body, te is not None, receive, req_capture,
                                                replay=retryable, deadline=deadline,
                                                body_timeout=body_timeout, max_body=max_body,
                                                upgrade=handover is not None)
                except ClientGone:
                    breaker.record(True)  # not the upstream's fault
                    return
                except BadRequest as exc:  # the body was too large or stopped arriving
                    breaker.record(True)
                    return await self._error(send, exc.status, BOUND_ERRORS.get(exc.status, "refused"),
                                             backend, request_id, started, method, path, route.name,
                                             detail=str(exc), headers=CLOSE)
                except UpstreamError as exc:
                    if exc.kind == "busy":
                        breaker.release()  # never sent: says nothing about the upstream
                    else:
                        breaker.record(False)
                    error = exc
                    self.metrics.observe(route.name, backend, exc.status, (perf_counter() - started) * 1000, exc.kind)
                    attempts -= 1
                    if attempts > 0 and exc.kind != "busy" and monotonic() < deadline:
                        continue
                else:
                    if handover is not None and conn.status == 101:
                        return await self._tunnel(conn, handover, route, backend, breaker, config,
                                                  request_id, new_cohort, started, method, path)
                    try:
                        status = await relay(conn, receive, send, config, backend,
                                                     request_id, capture, breaker)
                    except (ClientGone, UpstreamCut) as exc:
                        kind = "client_gone" if isinstance(exc, ClientGone) else "cut"
                        ms = (perf_counter() - started) * 1000
                        self.metrics.observe(route.name, backend, conn.status, ms, kind)
                        if self.access_log.enabled:
                            self.access_log.write(request_id=request_id, method=method, path=path,
                                                  route=route.name, backend=backend,
                                                  status=conn.status, ms=ms, error=kind)
                        if isinstance(exc, UpstreamCut):
                            raise  # the server closes the client connection: the cut is visible
                        return
                    ms = (perf_counter() - started) * 1000
                    self.metrics.observe(route.name, backend, status, ms)
                    if self.access_log.enabled:
                        self.access_log.write(request_id=request_id, method=method, path=path,
                                              route=route.name, backend=backend, status=status, ms=ms)
                    if capture is not None and TOO_BIG not in capture and \
                            (req_capture is None or TOO_BIG not in req_capture):
                        body = None if req_capture is None else b"".join(req_capture)
                        self.shadow.offer(route, snap, backend, method, line, tail, status,
                                          conn.headers, capture, body, te is not None)
                    return
            fallback = route.fallback if owner is None else None  # a write goes to the owner only
            out_of_time = monotonic() >= deadline
            if retryable and fallback and fallback != backend and not tried_fallback and not out_of_time:
                tried_fallback = True
                backend = fallback
                attempts = 1
                continue
            if out_of_time:
                return await self._error(send, 504, "deadline", backend, request_id, started, method,
                                         path, route.name, count=False, detail=f"route {route.name}'s "
                                         f"deadline ({route.deadline}s) passed; last error: {error}")
            return await self._error(send, error.status, f"upstream_{error.kind}", backend, request_id,
                                     started, method, path, route.name, detail=str(error), count=False,
                                     headers=RETRY_AFTER if error.status == 503 else ())

    async def _tunnel(self, conn: Any, handover: Callable[..., Any], route: Route, backend: str,
                      breaker: Any, config: Config, request_id: str, cohort: bytes | None,
                      started: float, method: str, path: str) -> None:
        """The upstream switched protocols: answer 101, then relay bytes until a side closes."""
        breaker.record(True)
        assert route.websocket is not None
        tunnel = Tunnel(conn, route.websocket.idle_timeout)
        try:
            client = handover(_switching_head(conn.headers, config, backend, request_id, cohort), tunnel)
        except ClientGone:
            conn.close()
            return
        tunnel.start(client)
        ms = (perf_counter() - started) * 1000
        self.metrics.observe(route.name, backend, 101, ms)  # counted once, at the handshake
        reason = await tunnel.run()
        if self.access_log.enabled:
            self.access_log.write(request_id=request_id, method=method, path=path, route=route.name,
                                  backend=backend, status=101, ms=(perf_counter() - started) * 1000,
                                  error="idle_timeout" if reason == "idle_timeout" else None)

    def _choose(self, route: Route, scope: Scope, cookie: bytes | None,
                anonymous: AnonymousCohort | None, scheme: str) -> tuple[str, bytes | None]:
        """The backend, and a Set-Cookie value when a new anonymous visitor gets a cohort."""
        backends = route.backends
        override = None
        if route.override_header is not None:
            override = _header(scope["headers"], route.override_header.encode())
        if override is None and route.override_cookie is not None and cookie is not None:
            override = _cookie(cookie, route.override_cookie)
        if len(backends) == 1 and override is None:
            return backends[0][0], None
        key = None
        if route.cohort_header is not None:
            key = _header(scope["headers"], route.cohort_header.encode())
        if key is None and route.cohort_cookie is not None and cookie is not None:
            key = _cookie(cookie, route.cohort_cookie)
        new_cohort = None
        if key is None and anonymous is not None:
            # Behind an ingress every anonymous visitor has the same address: give each a
            # sticky cohort of its own so a canary splits them like logged-in users.
            key = _cookie(cookie, anonymous.cookie) if cookie is not None else None
            if key is None and route.splits:
                key = f"{random.getrandbits(64):016x}"
                new_cohort = _cohort_cookie(anonymous, key, secure=scheme == "https")
        if key is None:
            client = scope.get("client")
            key = client[0] if client else ""
        return balance.choose(backends, salt=route.salt, key=key, override=override,
                              candidate=route.candidate), new_cohort

    async def _rate_limited(self, send: Send, route: Route, limit: ratelimit.RateLimit,
                            verdict: ratelimit.Verdict, headers: tuple[tuple[bytes, bytes], ...],
                            request_id: str, started: float, method: str, path: str) -> None:
        self.metrics.rate_limited[route.name] = self.metrics.rate_limited.get(route.name, 0) + 1
        self.metrics.dirty = True
        per = f"{limit.header.decode()} header" if limit.header else limit.key
        await self._error(send, 429, "rate_limited", None, request_id, started, method, path,
                          route.name, count=False, headers=headers,
                          detail=f"route {route.name} allows {limit.spec} per {per} (burst "
                                 f"{limit.burst}); retry in {max(1, math.ceil(verdict.retry_after))}s")

    async def _held(self, send: Send, route: Route, group: Group, request_id: str, started: float,
                    method: str, path: str) -> None:
        """503 while the group's ownership moves: nothing was forwarded, a retry is safe."""
        hold = group.hold
        assert hold is not None
        wait = hold.retry_after()
        why = f" ({hold.reason})" if hold.reason else ""
        await self._error(send, 503, "writes_held", None, request_id, started, method, path,
                          route.name, headers=((b"retry-after", str(wait).encode()),),
                          detail=f"writes to route {route.name} are held: ownership of {group.name} "
                                 f"is moving{why}; retry after {wait} s")

    async def _refuse(self, send: Send, status: int, detail: str, started: float, method: str,
                      raw_path: bytes) -> None:
        await self._error(send, status, "bad_request" if status == 400 else "refused", None,
                          f"{random.getrandbits(128):032x}", started, method,
                          raw_path.decode("latin-1"), None, detail=detail)

    async def _error(self, send: Send, status: int, error: str, upstream: str | None,
                     request_id: str, started: float, method: str, path: str, route: str | None,
                     *, detail: str, count: bool = True,
                     headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
        body = json.dumps({"error": error, "detail": detail, "upstream": upstream,
                           "request_id": request_id}).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()),
                                (b"x-request-id", request_id.encode()), *headers]})
        await send({"type": "http.response.body", "body": body})
        ms = (perf_counter() - started) * 1000
        if count and route is not None:
            self.metrics.observe(route, upstream or "-", status, ms, error)
        if self.access_log.enabled:
            self.access_log.write(request_id=request_id, method=method, path=path, route=route,
                                  backend=upstream, status=status, ms=ms, error=error)


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
