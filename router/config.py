"""routes.yaml → immutable, validated `Config` (router/edit.py is the one way to change the file).

Place in the flow: read at start and on every reload (file watch, SIGHUP, admin API).
The whole file is checked before anything changes — first against the JSON Schema shipped
beside this module (`routes.schema.json`, also for editors), then for meaning (backends name
known upstreams, weights sum to 100, ...). Every error names the YAML line, the key path, the
bad value and the fix; the caller keeps its running config.

The ownership file (`ownership:` at the top, relative to this file; default `ownership.yaml`
beside it when it exists) is part of the same config: it is loaded and checked with the routes
(a route's `writes: <group>` sends write methods to the group's owner; a route without it may
not send writes to a side that does not own its group), and a bad one is refused the same way.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import yaml

import forwarding
import ownership as own
from ownership import WRITE_METHODS, Ownership, OwnershipError
from router import headerroutes
from router.errors import ConfigError
from router.headerroutes import HeaderRoute
from router.ratelimit import RateLimit, policy
from router.sharedbuckets import SharedStore
from router.tls import ListenTLS, TLSSetupError, UpstreamTLS, listen_tls, upstream_tls
from telemetry import TracingError, TracingSettings

SCHEMA_PATH = Path(__file__).with_name("routes.schema.json")
SCHEMA: dict[str, Any] = json.loads(SCHEMA_PATH.read_text())
_VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
IDENTITY_SECRET_ENV = "STRANGLER_IDENTITY_SECRET"
DEFAULT_LEDGER = ".strangler/ledger.jsonl"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True, kw_only=True)
class BreakerConfig:
    failures: int = 5
    error_rate: float = 0.5
    window: float = 10.0
    min_requests: int = 20
    open_for: float = 5.0
    probes: int = 1


@dataclass(frozen=True, kw_only=True)
class HealthCheck:
    """`upstreams.<name>.health`: the active check of each endpoint (`router.health`)."""

    path: str = "/healthz"
    interval: float = 2.0
    timeout: float = 1.0
    fall: int = 3  # failed checks in a row that take an endpoint out
    rise: int = 2  # passed checks in a row that put it back


@dataclass(frozen=True, kw_only=True)
class Endpoint:
    """One address of an upstream (`url:` may list several)."""

    url: str
    host: str
    port: int

    @property
    def authority(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, kw_only=True)
class Upstream:
    name: str
    url: str  # the first endpoint's (a one-URL upstream: its only one)
    host: str
    port: int
    endpoints: tuple[Endpoint, ...] = ()  # every URL listed, in order; () means just url
    health: HealthCheck | None = None
    connect_timeout: float = 2.0
    read_timeout: float = 30.0
    pool_size: int = 64
    host_header: str = "upstream"
    breaker: BreakerConfig = field(default_factory=BreakerConfig)
    # --- bounds (issue 15) ---
    max_connections: int = 1024  # open connections per worker, busy + idle; then 503
    idle_timeout: float = 4.0  # a pooled connection idle longer is not reused
    tls: UpstreamTLS | None = None  # set for https upstreams (issue 15: TLS)

    @property
    def authority(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, kw_only=True)
class Match:
    prefix: str | None = None
    exact: str | None = None
    methods: frozenset[str] | None = None
    host: str | None = None
    header: tuple[str, str | None] | None = None  # (lower-case name, value or None)


@dataclass(frozen=True, kw_only=True)
class Shadow:
    to: str
    percent: float = 0.0
    methods: frozenset[str] = frozenset({"GET", "HEAD"})
    ignore: tuple[str, ...] = ()
    unordered: tuple[str, ...] = ()
    headers: tuple[str, ...] = ("content-type",)
    keep: int = 20
    queue: int = 256
    # issue 15 (admin/retries): lower-case names redacted in kept pairs, beyond REDACT_ALWAYS
    redact: frozenset[str] = frozenset()
    # issue 15 (noise that decays): comparisons remembered per kind, and how much more often
    # than the primary disagrees with itself the candidate may differ on a field it calls noise
    noise_window: int = 100
    noise_ratio: float = 2.0
    seed: int | None = None  # sampling below 100 %: a seeded generator (tests), else fresh entropy


@dataclass(frozen=True, kw_only=True)
class WebSocket:
    """WebSocket passthrough on a route (`websocket:` globally and per route)."""

    idle_timeout: float = 300.0  # seconds without a byte either way; then both sockets close


@dataclass(frozen=True, kw_only=True)
class Route:
    name: str
    match: Match
    backends: tuple[tuple[str, int], ...]  # (upstream name, weight %), primary first
    salt: str
    cohort_cookie: str | None = None
    cohort_header: str | None = None  # lower case
    override_header: str | None = None  # lower case
    override_cookie: str | None = None
    candidate: str = ""
    header_routes: tuple[HeaderRoute, ...] = ()  # checked before cohorts and weights (router.headerroutes)
    fallback: str | None = None
    retries: int = 0
    identity: bool = False
    shadow: Shadow | None = None
    # issue 15 (admin/retries): methods that may be replayed (retries, stale connections,
    # fallback): GET/HEAD/OPTIONS, plus PUT/DELETE where `retry: {idempotent: [...]}` says so
    retry_methods: frozenset[str] = SAFE_METHODS
    # --- bounds (issue 15) ---
    deadline: float = 32.0  # seconds from arrival to response head, over every attempt
    max_body_bytes: int | None = 100 * 1024 * 1024  # larger bodies get 413; None: no limit
    splits: bool = False  # two or more backends have weight: anonymous visitors get a cohort
    # issue 15 (rate limits): a token bucket per client key; None: no limit (one check)
    rate_limit: RateLimit | None = None
    websocket: WebSocket | None = WebSocket()  # None: an Upgrade is forwarded as plain HTTP
    # issue 11: the ownership group whose owner gets this route's write methods (weights,
    # cohorts and overrides then decide reads only); None: writes follow the weights too
    writes: str | None = None

    @property
    def weights(self) -> dict[str, int]:
        return dict(self.backends)


@dataclass(frozen=True, kw_only=True)
class Identity:
    upstream: str = "monolith"
    path: str = "/api/whoami/"
    cookie: str = "sessionid"
    cache_ttl: float = 10.0
    header_ttl: int = 60


def _tracing(block: Any, fail: Any) -> TracingSettings:
    try:
        return TracingSettings.parse(block, "tracing")
    except TracingError as exc:
        key = str(exc).split(":", 1)[0].split(".")[1:]
        raise fail(("tracing", *key), str(exc).split(": ", 1)[-1],
                   "see README, Traces (or remove the tracing block: off)") from None


# --- bounds and proxies (issue 15) -------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class ClientLimits:
    """Bounds on client connections (each worker holds its own count)."""

    body_timeout: float = 30.0  # seconds between request body bytes; then 408
    send_timeout: float = 30.0  # seconds a client may leave response bytes unread; then cut
    max_connections: int = 4096  # open client connections per worker; more get 503


@dataclass(frozen=True, kw_only=True)
class AnonymousCohort:
    """The sticky cookie the router sets for visitors without a user key on split routes."""

    cookie: str = "strangler_cohort"
    max_age: int = 30 * 24 * 3600


# --- end of bounds and proxies ------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Config:
    upstreams: Mapping[str, Upstream]
    routes: tuple[Route, ...]
    ledger_path: Path
    backend_header: str | None = "x-strangler-backend"
    access_log: bool | str = True
    max_header_bytes: int = 16384
    reload_interval: float = 1.0
    identity: Identity | None = None
    # --- bounds and proxies (issue 15) ---
    client: ClientLimits = field(default_factory=lambda: ClientLimits())
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    anonymous_cohort: AnonymousCohort | None = field(default_factory=lambda: AnonymousCohort())
    listen_tls: ListenTLS | None = None  # the listener terminates TLS (read at start)
    admin_listen: tuple[str, int] | None = None  # (host, port) serving /_strangler/* alone (read at start)
    rate_limit_store: SharedStore | None = None  # buckets shared by replicas (None: this machine's)
    # issue 11: who may write each synced table, read with this file (None: none declared)
    ownership: Ownership | None = None
    ownership_path: Path | None = None  # the file watched (the default one may not exist yet)
    tracing: TracingSettings = field(default_factory=lambda: TracingSettings())  # issue 16 (router.tracing)
    source: str = "<string>"
    sha256: str = ""

    @property
    def ownership_sha256(self) -> str:
        return self.ownership.sha256 if self.ownership is not None else ""

    def route(self, name: str) -> Route:
        for route in self.routes:
            if route.name == name:
                return route
        raise ConfigError(f"no route named {name!r}; known routes: {', '.join(r.name for r in self.routes)}")


# --- YAML with line numbers -------------------------------------------------------------

def _line_index(node: yaml.Node | None, path: tuple[Any, ...] = (), out: dict | None = None) -> dict:
    """Map every key path in the composed YAML tree to its 1-based line."""
    out = {} if out is None else out
    if node is None:
        return out
    out[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            k = key.value
            out[path + (k,)] = key.start_mark.line + 1
            _line_index(value, path + (k,), out)
            out[path + (k,)] = key.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _line_index(item, path + (i,), out)
    return out


def _dotted(path: tuple[Any, ...]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "<top>"


def _fail(source: str, lines: dict, path: tuple[Any, ...], problem: str, fix: str) -> ConfigError:
    line = None
    for cut in range(len(path), -1, -1):
        if path[:cut] in lines:
            line = lines[path[:cut]]
            break
    where = f"{source}:{line}" if line else source
    return ConfigError(f"{where}: {_dotted(path)}: {problem} — fix: {fix}",
                       key_path=_dotted(path), line=line)


def _schema_fix(error: jsonschema.ValidationError) -> str:
    schema = error.schema if isinstance(error.schema, dict) else {}
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))  # type: ignore[union-attr]
        return f"remove or rename the key (allowed here: {', '.join(allowed)})"
    if error.validator == "required":
        return "add the missing key"
    return str(schema.get("description") or "see router/routes.schema.json")


# --- parsing ----------------------------------------------------------------------------

def parse_config(text: str, *, source: str = "<string>", base_dir: Path | None = None,
                 ownership: Ownership | None = None) -> Config:
    """Validate routes.yaml text whole and build the immutable `Config` (or raise ConfigError).

    The ownership file named by the text (or beside it) is read too, unless `ownership` is
    given: then the routes are checked against that one (e.g. before writing it).
    """
    try:
        lines = _line_index(yaml.compose(text))
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else None
        raise ConfigError(f"{source}:{line}: not valid YAML: {exc} — fix: correct the syntax",
                          line=line) from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the file must be a mapping with `upstreams` and `routes` — "
                          "fix: start from the example routes.yaml at the repository root")
    errors = sorted(_VALIDATOR.iter_errors(data), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        err = fix_from = errors[0]
        if err.validator in ("oneOf", "anyOf") and err.context:
            # One URL or a list of them: say what is wrong with the form that was written
            # (not that it is not the other form); the fix stays the key's description.
            meant = [e for e in err.context if e.validator != "type"] or err.context
            err = jsonschema.exceptions.best_match(meant) or err
        path = tuple(err.absolute_path)
        if err.validator == "additionalProperties" and isinstance(err.instance, dict):
            allowed = err.schema.get("properties", {}) if isinstance(err.schema, dict) else {}
            extra = [k for k in err.instance if k not in allowed]
            path += tuple(extra[:1])  # point at the offending key's own line
        raise _fail(source, lines, path, f"{err.message} (value: {json.dumps(err.instance)[:80]})",
                    _schema_fix(fix_from))

    def fail(path: tuple[Any, ...], problem: str, fix: str) -> ConfigError:
        return _fail(source, lines, path, problem, fix)

    base = base_dir or Path.cwd()
    upstreams: dict[str, Upstream] = {}
    for name, spec in data["upstreams"].items():
        endpoints = _endpoints(spec["url"], ("upstreams", name, "url"), fail)
        first = endpoints[0]
        url = urlsplit(first.url)
        upstreams[name] = Upstream(
            name=name, url=first.url, host=first.host, port=first.port, endpoints=endpoints,
            health=_health(spec, ("upstreams", name, "health"), fail),
            connect_timeout=float(spec.get("connect_timeout", 2.0)),
            read_timeout=float(spec.get("read_timeout", 30.0)),
            pool_size=int(spec.get("pool_size", 64)),
            host_header=spec.get("host_header", "upstream"),
            breaker=BreakerConfig(**spec.get("breaker", {})),
            **_upstream_bounds(spec, ("upstreams", name), fail),
            tls=_upstream_tls(spec, url.scheme, first.host, ("upstreams", name), base, fail),
        )

    def known(path: tuple[Any, ...], name: str) -> str:
        if name not in upstreams:
            raise fail(path, f"unknown upstream {name!r}",
                       f"use one of: {', '.join(upstreams)} (or declare it under upstreams)")
        return name

    # Text without a file (no base_dir) has nothing "beside" it: only a named file is read.
    own_path, ownership = _ownership(data, base, source, lines, ownership, beside=base_dir is not None)

    identity = None
    if "identity" in data:
        ident = data["identity"]
        identity = Identity(**ident)
        known(("identity", "upstream"), identity.upstream)

    routes: list[Route] = []
    seen: set[str] = set()
    for i, spec in enumerate(data["routes"]):
        at = ("routes", i)
        name = spec["name"]
        if name in seen:
            raise fail(at + ("name",), f"route name {name!r} is used twice", "give each route a unique name")
        seen.add(name)
        m = spec["match"]
        if ("prefix" in m) == ("exact" in m):
            raise fail(at + ("match",), "needs exactly one of `prefix` or `exact`",
                       "write e.g. `match: {prefix: /api/products}`")
        header = None
        if "header" in m:
            header = (m["header"]["name"].lower(), m["header"].get("value"))
        match = Match(prefix=m.get("prefix"), exact=m.get("exact"),
                      methods=frozenset(m["methods"]) if "methods" in m else None,
                      host=m["host"].lower() if "host" in m else None, header=header)
        backends = tuple((known(at + ("backends", b), b), w) for b, w in spec["backends"].items())
        total = sum(w for _, w in backends)
        if total != 100:
            raise fail(at + ("backends",), f"weights sum to {total}, not 100",
                       "make the percentages add up to 100, e.g. {monolith: 90, catalog: 10}")
        override = spec.get("override", {})
        candidate = override.get("candidate", backends[-1][0])
        if candidate not in dict(backends):
            raise fail(at + ("override", "candidate"), f"{candidate!r} is not a backend of this route",
                       f"use one of: {', '.join(b for b, _ in backends)}")
        fallback = spec.get("fallback")
        if fallback is not None:
            known(at + ("fallback",), fallback)
        if spec.get("identity") and identity is None:
            identity = Identity()
            if identity.upstream not in upstreams:
                raise fail(at + ("identity",), "identity is on but no `identity:` section names "
                           "the whoami upstream", "add `identity: {upstream: monolith}`")
        shadow = None
        if "shadow" in spec:
            s = spec["shadow"]
            known(at + ("shadow", "to"), s["to"])
            shadow = Shadow(
                to=s["to"], percent=float(s.get("percent", 0)),
                methods=frozenset(s.get("methods", ["GET", "HEAD"])),
                ignore=tuple(s.get("ignore", ())), unordered=tuple(s.get("unordered", ())),
                headers=tuple(h.lower() for h in s.get("headers", ["content-type"])),
                keep=int(s.get("keep", 20)), queue=int(s.get("queue", 256)),
                redact=_redact_names(s), noise_window=int(s.get("noise_window", Shadow.noise_window)),
                noise_ratio=float(s.get("noise_ratio", Shadow.noise_ratio)), seed=s.get("seed"))
        cohort = spec.get("cohort", {})
        writes = _writes(spec, at, ownership, upstreams, fail)
        sides = list(ownership.groups[writes].sides) if writes and ownership else []
        routes.append(Route(
            name=name, match=match, backends=backends, salt=spec.get("salt", name),
            cohort_cookie=cohort.get("cookie"),
            cohort_header=cohort["header"].lower() if "header" in cohort else None,
            override_header=override["header"].lower() if "header" in override else None,
            override_cookie=override.get("cookie"), candidate=candidate, fallback=fallback,
            header_routes=headerroutes.parse(spec.get("header_routes", []), at + ("header_routes",),
                                             [b for b, _ in backends], fail),
            retries=int(spec.get("retries", 0)), identity=bool(spec.get("identity", False)),
            shadow=shadow, retry_methods=_retry_methods(spec, at, fail),
            rate_limit=_route_rate_limit(data, spec, at, name, cohort, fail),
            websocket=_websocket(data.get("websocket", {}), spec.get("websocket", {})),
            writes=writes,
            **_route_bounds(spec, [upstreams[b] for b, _ in backends] +
                            ([upstreams[fallback]] if fallback else []) +
                            [upstreams[s] for s in sides])))
        if ownership is not None:
            _refuse_stray_writes(routes[-1], ownership, at, fail)

    ledger_path = Path(data.get("ledger", DEFAULT_LEDGER))
    header = data.get("backend_header", "X-Strangler-Backend")
    return Config(
        upstreams=upstreams, routes=tuple(routes),
        ledger_path=ledger_path if ledger_path.is_absolute() else base / ledger_path,
        backend_header=header.lower() if header else None,
        access_log=_log_target(data.get("access_log", True), base),
        max_header_bytes=int(data.get("max_header_bytes", 16384)),
        reload_interval=float(data.get("reload_interval", 1.0)),
        identity=identity, **_router_bounds(data, fail), listen_tls=_listen_tls(data, base, fail),
        admin_listen=_admin_listen(data.get("admin_listen"), fail),
        rate_limit_store=_rate_limit_store(data.get("rate_limit_store"), fail),
        tracing=_tracing(data.get("tracing"), fail),
        ownership=ownership, ownership_path=own_path, source=source,
        sha256=hashlib.sha256(text.encode()).hexdigest())


# --- bounds and proxies (issue 15) -------------------------------------------------------

Fail = Any  # (key path, problem, fix) -> ConfigError


def _endpoints(urls: str | list[str], at: tuple[Any, ...], fail: Fail) -> tuple[Endpoint, ...]:
    """`url:` — one URL or a list of them (issue 15: several endpoints per upstream)."""
    listed = [urls] if isinstance(urls, str) else urls
    endpoints: list[Endpoint] = []
    for i, text in enumerate(listed):
        where = at if isinstance(urls, str) else at + (i,)
        url = urlsplit(text)
        if not url.hostname:
            raise fail(where, f"{text!r} has no host", "write http://host:port")
        try:
            port = url.port or (443 if url.scheme == "https" else 80)
        except ValueError as exc:
            raise fail(where, f"bad port in {text!r}", "write http://host:port with a port 1-65535") from exc
        if url.scheme != urlsplit(listed[0]).scheme:
            raise fail(where, f"{text!r} is {url.scheme}:// but {listed[0]!r} is "
                       f"{urlsplit(listed[0]).scheme}://", "list endpoints of one scheme in one "
                       "upstream (one `tls:` applies to all), or declare two upstreams")
        endpoint = Endpoint(url=text.rstrip("/"), host=url.hostname, port=port)
        if any(e.authority == endpoint.authority for e in endpoints):
            raise fail(where, f"{text!r} names {endpoint.authority} twice", "list each endpoint once")
        endpoints.append(endpoint)
    return tuple(endpoints)


def _health(spec: dict[str, Any], at: tuple[Any, ...], fail: Fail) -> HealthCheck | None:
    if "health" not in spec:
        return None
    check = HealthCheck(**spec["health"])
    if check.timeout > check.interval:
        raise fail(at + ("timeout",), f"timeout {check.timeout} is longer than interval "
                   f"{check.interval}", "make the check's timeout at most its interval")
    return check


def _upstream_bounds(spec: dict[str, Any], at: tuple[Any, ...], fail: Fail) -> dict[str, Any]:
    most = int(spec.get("max_connections", Upstream.max_connections))
    if int(spec.get("pool_size", 64)) > most:
        raise fail(at + ("pool_size",), f"pool_size {spec.get('pool_size', 64)} is above "
                   f"max_connections {most}", "keep pool_size (idle) at or below max_connections")
    return {"max_connections": most,
            "idle_timeout": float(spec.get("idle_timeout", Upstream.idle_timeout))}


def _route_bounds(spec: dict[str, Any], ups: list[Upstream]) -> dict[str, Any]:
    # By default one attempt's worth: retries and the fallback fit in what a single slow
    # attempt could take, instead of stacking a read timeout each.
    deadline = spec.get("deadline", max(u.connect_timeout + u.read_timeout for u in ups))
    return {"deadline": float(deadline),
            "max_body_bytes": spec.get("max_body_bytes", Route.max_body_bytes),
            "splits": sum(1 for w in spec["backends"].values() if w > 0) > 1}


def _router_bounds(data: dict[str, Any], fail: Fail) -> dict[str, Any]:
    nets = []
    for i, cidr in enumerate(data.get("trusted_proxies", ())):
        try:
            nets.append(forwarding.network(cidr))
        except forwarding.ForwardingError as exc:
            raise fail(("trusted_proxies", i), str(exc), "write an address (10.0.0.5) or a network "
                       "with no host bits (10.0.0.0/8, fd00::/8)") from exc
    anon = data.get("anonymous_cohort", {})
    return {"client": ClientLimits(**data.get("client", {})), "trusted_proxies": tuple(nets),
            "anonymous_cohort": None if anon is None else AnonymousCohort(**anon)}


def _admin_listen(text: str | None, fail: Fail) -> tuple[str, int] | None:
    """`127.0.0.1:9901` or `[::1]:9901` → (host, port); None when not set."""
    if text is None:
        return None
    host, sep, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    fix = "write host:port, e.g. 127.0.0.1:9901 (loopback: only this machine) or [::1]:9901"
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise fail(("admin_listen",), f"{text!r} is not host:port with a port from 1 to 65535", fix)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not re.fullmatch(r"[A-Za-z0-9.-]{1,253}", host):
            raise fail(("admin_listen",), f"{host!r} is neither an address nor a host name", fix) from None
    return host, int(port)


# --- end of bounds and proxies ------------------------------------------------------------


# --- TLS (issue 15): `upstreams.<name>.tls` and `listen_tls` ------------------------------

def _upstream_tls(spec: dict[str, Any], scheme: str, host: str, at: tuple[Any, ...], base: Path,
                  fail: Fail) -> UpstreamTLS | None:
    if scheme != "https":
        if "tls" in spec:
            raise fail(at + ("tls",), "TLS settings on an http:// upstream",
                       f"write the url as https://{spec['url'].split('://', 1)[1].rstrip('/')} "
                       "or remove `tls:`")
        return None
    try:
        return upstream_tls(spec.get("tls", {}), host=host, base=base)
    except TLSSetupError as exc:
        raise fail(at + ("tls", exc.key), exc.problem, exc.fix) from exc


def _listen_tls(data: dict[str, Any], base: Path, fail: Fail) -> ListenTLS | None:
    if "listen_tls" not in data:
        return None
    try:
        return listen_tls(data["listen_tls"], base=base)
    except TLSSetupError as exc:
        raise fail(("listen_tls", exc.key), exc.problem, exc.fix) from exc


# --- end of TLS ---------------------------------------------------------------------------

def _websocket(common: dict[str, Any], own: dict[str, Any]) -> WebSocket | None:
    """A route's WebSocket settings: its own keys over the file's `websocket:` defaults."""
    merged = {**common, **own}
    if not merged.get("enabled", True):
        return None
    return WebSocket(idle_timeout=float(merged.get("idle_timeout", WebSocket.idle_timeout)))


def _log_target(value: bool | str, base: Path) -> bool | str:
    if isinstance(value, str) and value != "-":
        p = Path(value)
        return str(p if p.is_absolute() else base / p)
    return value is True or value == "-"


def load_config(path: str | os.PathLike[str], *, ownership: Ownership | None = None) -> Config:
    """Read and validate a routes file and its ownership file (ConfigError if missing or invalid).

    `ownership` given: validate the routes against it instead of the file (`strangler own`
    checks a new owner this way before writing it).
    """
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read the routes file ({exc.strerror}) — fix: pass "
                          "--config with the path of an existing routes.yaml") from exc
    return parse_config(text, source=str(p), base_dir=p.absolute().parent, ownership=ownership)


def diff_weights(old: Config | None, new: Config) -> list[tuple[str, dict[str, int], dict[str, int]]]:
    """Routes whose weights differ between two configs: (route, old weights, new weights)."""
    before = {r.name: r.weights for r in old.routes} if old else {}
    return [(r.name, before.get(r.name, {}), r.weights) for r in new.routes
            if before.get(r.name) != r.weights]


# --- issue 15 (admin/retries) keys: `retry:` on a route, `redact:` in a shadow ------------

REPLAY_OPT_IN = frozenset({"PUT", "DELETE"})
# Always redacted from kept shadow pairs: credentials of whoever made the request.
REDACT_ALWAYS = frozenset({"cookie", "authorization", "set-cookie", "proxy-authorization"})


def _retry_methods(spec: dict[str, Any], at: tuple[Any, ...],
                   fail: Any) -> frozenset[str]:
    """The methods a route may replay: the safe ones, plus PUT/DELETE named under `retry`."""
    named = spec.get("retry", {}).get("idempotent", [])
    for i, method in enumerate(named):
        if method not in REPLAY_OPT_IN | SAFE_METHODS:
            raise fail(at + ("retry", "idempotent", i), f"{method} is not idempotent: the "
                       "router never replays it (the upstream may have run it already)",
                       "list only PUT or DELETE, and only if this upstream treats them as idempotent")
    return SAFE_METHODS | frozenset(named)


def _redact_names(shadow: dict[str, Any]) -> frozenset[str]:
    return REDACT_ALWAYS | frozenset(name.lower() for name in shadow.get("redact", ()))


# --- issue 15 (rate limits): `rate_limit:` on a route, or router-wide as the default --------

_RATE_UNITS = {"s": 1.0, "sec": 1.0, "second": 1.0, "min": 60.0, "minute": 60.0,
               "h": 3600.0, "hour": 3600.0}
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


def _route_rate_limit(data: dict[str, Any], spec: dict[str, Any], at: tuple[Any, ...], route: str,
                      cohort: dict[str, Any], fail: Fail) -> RateLimit | None:
    """The route's own `rate_limit` (false: none), else the router-wide one, else none."""
    if "rate_limit" in spec:
        limit, where = spec["rate_limit"], at + ("rate_limit",)
    else:
        limit, where = data.get("rate_limit"), ("rate_limit",)
    if limit is True:
        raise fail(where, "true is not a rate limit", "write `{rate: 10/s, burst: 20}`, or false for none")
    if not limit:
        return None
    count, per = _parse_rate(limit["rate"], where + ("rate",), fail)
    burst = int(limit.get("burst", math.ceil(count)))
    key = limit.get("key", "address")
    header = None
    if key.startswith("header:"):
        name = key.removeprefix("header:").strip()
        if not _HEADER_NAME.match(name):
            raise fail(where + ("key",), f"{key!r} names no valid header",
                       "write header:<Name>, e.g. header:X-Api-Key")
        key, header = "header", name.lower().encode()
    elif key not in ("address", "user", "route"):
        raise fail(where + ("key",), f"unknown key {key!r}",
                   "use address, user, route or header:<Name> (e.g. header:X-Api-Key)")
    if key == "user" and not (cohort.get("cookie") or cohort.get("header")):
        raise fail(where + ("key",), f"key user needs route {route!r} to name its user key",
                   "add `cohort: {cookie: sessionid}` (or a header) to the route, or use key: address")
    rate = count / per
    return RateLimit(rate=rate, burst=burst, key=key, header=header, spec=limit["rate"],
                     policy=policy(route, rate, burst))


def _rate_limit_store(block: dict[str, Any] | None, fail: Fail) -> SharedStore | None:
    """`rate_limit_store: {redis: redis://host:6379/0, timeout: 0.05, on_error: local|refuse}`."""
    if block is None:
        return None
    url = urlsplit(block["redis"])
    if url.scheme not in ("redis", "rediss") or not url.hostname:
        raise fail(("rate_limit_store", "redis"), f"{block['redis']!r} is not a Redis URL",
                   "write redis://host:6379/0 (rediss:// for TLS)")
    return SharedStore(redis=block["redis"], timeout=float(block.get("timeout", 0.05)), on_error=block.get("on_error", "local"),
                       retry_after=float(block.get("retry_after", 1.0)))


def _parse_rate(text: str, at: tuple[Any, ...], fail: Fail) -> tuple[float, float]:
    count, sep, unit = str(text).partition("/")
    try:
        number = float(count)
    except ValueError:
        number = -1.0
    if not sep or unit.strip() not in _RATE_UNITS or not 0 < number < math.inf:
        raise fail(at, f"{text!r} is not a rate", "write requests per unit, e.g. 10/s, 600/min or 1000/h")
    return number, _RATE_UNITS[unit.strip()]


# --- issue 11 (write ownership): `ownership:` at the top, `writes:` on a route ---------------

def _ownership(data: dict[str, Any], base: Path, source: str, lines: dict, given: Ownership | None,
               *, beside: bool) -> tuple[Path | None, Ownership | None]:
    """The ownership file's path (watched even while absent) and what it declares."""
    named = data.get("ownership")
    if named is None and not beside:
        return None, given
    path = Path(named or own.DEFAULT_PATH)
    path = path if path.is_absolute() else base / path
    if given is not None:
        return path, given
    if named is None and not path.exists():
        return path, None  # no ownership declared: writes follow the weights, as before
    try:
        return path, own.load(path)
    except OwnershipError as exc:
        line = lines.get(("ownership",))
        where = f"{source}:{line}" if line else source
        hint = "" if named else " (read because it lies beside the routes file)"
        raise ConfigError(f"{where}: ownership{hint}: {exc}", key_path="ownership", line=line) from exc


def _writes(spec: dict[str, Any], at: tuple[Any, ...], ownership: Ownership | None,
            upstreams: Mapping[str, Upstream], fail: Fail) -> str | None:
    """A route's `writes:` group, checked: declared, and every side of it an upstream."""
    group = spec.get("writes")
    if group is None:
        return None
    if ownership is None:
        raise fail(at + ("writes",), f"the route's writes follow ownership group {group!r}, but no "
                   "ownership file is loaded", "add `ownership: ownership.yaml` at the top of this "
                   "file (a path relative to it) and declare the group there, or remove `writes:`")
    if group not in ownership.groups:
        raise fail(at + ("writes",), f"no ownership group {group!r} in {ownership.source}",
                   f"use one of: {', '.join(ownership.groups) or 'none declared'}")
    missing = [side for side in ownership.groups[group].sides if side not in upstreams]
    if missing:
        raise fail(at + ("writes",), f"ownership group {group} has side {missing[0]!r} but this file "
                   f"has no upstream {missing[0]!r}", "declare an upstream named like each side of the "
                   "group: writes go to the upstream named like the owner")
    return str(group)


def _refuse_stray_writes(route: Route, ownership: Ownership, at: tuple[Any, ...], fail: Fail) -> None:
    """Refuse a route that could send a write to a side that does not own its group.

    A route belongs to a group's migration when it names two sides of the group (backends,
    fallback or shadow): then, without `writes:`, none of the places a write may go (a backend
    with weight, the override candidate, the fallback, a shadow of write methods) may be a side
    that does not own it. A route naming one side only (the monolith's catch-all) is left alone:
    its writes are that side's own business, and the database guards back this check up.
    """
    methods = route.match.methods
    carried = WRITE_METHODS if methods is None else methods & WRITE_METHODS
    if not carried:
        return
    carries = "no match.methods" if methods is None else f"match.methods has {', '.join(sorted(carried))}"
    mirrored = route.shadow.methods & carried if route.shadow is not None else frozenset()
    named = set(route.weights) | {route.fallback} | {route.shadow.to if route.shadow else None}
    for g in ownership.groups.values():
        if mirrored and route.shadow is not None and route.shadow.to in g.sides and \
                route.shadow.to != g.owner and (route.writes == g.name or len(named & set(g.sides)) > 1):
            raise fail(at + ("shadow", "methods"), f"route {route.name} mirrors writes "
                       f"({', '.join(sorted(mirrored))}) to {route.shadow.to}, which does not own "
                       f"ownership group {g.name} (owner: {g.owner})",
                       "mirror only reads: remove the write methods from shadow.methods")
        if route.writes == g.name or len(named & set(g.sides)) < 2:
            continue
        targets: list[tuple[tuple[Any, ...], str, str]] = [
            (("backends", b), b, f"weight {w}") for b, w in route.backends if w > 0]
        if route.override_header is not None or route.override_cookie is not None:
            targets.append((("override", "candidate"), route.candidate, "the override candidate"))
        targets += [(("header_routes", i, "to"), h.to, f"header route {h.name}")
                    for i, h in enumerate(route.header_routes)]
        if route.fallback is not None:
            targets.append((("fallback",), route.fallback, "the fallback"))
        for key, target, how in targets:
            if target in g.sides and target != g.owner:
                raise fail(at + key, f"route {route.name} carries writes ({carries}) and would send "
                           f"them to {target} ({how}), which does not own ownership group {g.name} "
                           f"(owner: {g.owner})",
                           f"add `writes: {g.name}` to the route so writes follow ownership, or limit "
                           "match.methods to GET, HEAD")
