"""routes.yaml → a neutral plan that nginx.py and haproxy.py render: what each route does,
in the router's own terms, with nothing of either target's syntax.

Place in the flow: `strangler export` loads the routes file with the router's loader (so a
file the router refuses is refused here with the same message), builds a `Plan`, and hands
it to a renderer. Routes come in the router's matching order (`router.match.match_order`);
cohort slices come from `router.balance.cut_points`, so every plane splits users alike.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from dataplane.errors import ExportError
from router import balance, ledger
from router.config import SAFE_METHODS, Config, Route, Upstream, load_config
from router.errors import ConfigError
from router.match import match_order

IDENTITY_HEADER = "x-strangler-identity"  # the router's signed identity: never from a client
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})  # as ownership.WRITE_METHODS
# A salt and the names used in a rendered config must survive both targets' syntax as they
# are: no quoting, no variables ($), no argument separators (commas, parentheses).
_PLAIN = re.compile(r"[A-Za-z0-9_.:/-]+\Z")


@dataclass(frozen=True, kw_only=True)
class Server:
    host: str
    port: int


@dataclass(frozen=True, kw_only=True)
class Backend:
    name: str
    servers: tuple[Server, ...]
    connect_timeout: float
    read_timeout: float
    host_header: str  # what the Host line says: the first server's authority, or "client"
    failures: int  # consecutive failures that open the breaker (passive checks)
    open_for: float
    health_path: str | None
    health_interval: float
    fall: int
    rise: int


@dataclass(frozen=True, kw_only=True)
class CohortKey:
    """Where a route's user key comes from, first present and non-empty wins."""

    header: str | None  # lower case
    cookie: str | None
    anonymous_cookie: str | None  # the router's sticky cookie for anonymous visitors
    anonymous_max_age: int
    new_anonymous: bool  # no key at all: a fresh random key and its Set-Cookie (split routes)


@dataclass(frozen=True, kw_only=True)
class Override:
    header: str | None
    cookie: str | None
    always: str  # the backend `always` picks
    never: str  # the backend `never` picks


@dataclass(frozen=True, kw_only=True)
class Rule:
    """One route, ready to render."""

    index: int  # its place in the matching order
    name: str
    exact: str | None
    prefix: str | None
    methods: frozenset[str] | None
    host: str | None
    header: tuple[str, str | None] | None
    backends: tuple[tuple[str, int], ...]  # as routes.yaml lists them, primary first
    slices: tuple[tuple[str, int | None], ...]  # split_clients order with nginx's cut points
    salt: str
    key: CohortKey
    override: Override | None
    writes_to: str | None  # POST/PUT/PATCH/DELETE go here (the ownership group's owner)
    # while the group's ownership moves (`strangler own`'s hold): (group, retry-after s, until as
    # epoch seconds); the writes get 503 as from the router. None: not held when planned.
    writes_held: tuple[str, int, float] | None = None
    fallback: str | None
    retries: int
    retry_methods: frozenset[str]
    deadline: float
    max_body_bytes: int | None
    mirror_to: str | None
    mirror_percent: float
    mirror_methods: frozenset[str]
    identity: bool
    rate_limited: bool
    websocket: bool
    # (name, header lower case, exact|prefix|regex, value, backend): the first that matches wins
    header_routes: tuple[tuple[str, str, str, str, str], ...] = ()

    @property
    def every_cut(self) -> tuple[tuple[str, int], ...]:
        """Every backend in split_clients order, weight 0 included, with its exclusive upper
        bound (ABOVE_EVERY_HASH for the slice that takes the rest): the same split as `slices`,
        but the lines do not change with the weights, so a plane can take new weights live."""
        return every_cut(self.backends)

    @property
    def percent_slices(self) -> tuple[tuple[str, int], ...]:
        """(backend, weight %) in split_clients order, weight-0 backends left out."""
        return tuple(balance.slices(self.backends))


ABOVE_EVERY_HASH = 1 << 32  # the cohort hash is 32 bits: a cut no hash reaches


def every_cut(backends: tuple[tuple[str, int], ...]) -> tuple[tuple[str, int], ...]:
    """See Rule.every_cut. A weight-0 backend gets the bound before it: an empty range."""
    bounds = dict(balance.cut_points(backends))
    out, last = [], 0
    for name, weight in [backends[0], *reversed(backends[1:])]:
        if weight > 0:
            cut = bounds[name]
            last = ABOVE_EVERY_HASH if cut is None else cut
        out.append((name, last))
    return tuple(out)


@dataclass(frozen=True, kw_only=True)
class Plan:
    source: str  # the routes file, as given
    sha256: str  # of its bytes
    ledger_position: str  # the last ledger entry the file reflects, in words
    backends: tuple[Backend, ...]
    rules: tuple[Rule, ...]  # matching order
    backend_header: str | None
    ownership_source: str | None = None  # the ownership file the owners come from, if any

    @property
    def hold_ends(self) -> float | None:
        """When the first hold in this plan lapses (the plan must be made again then), or None."""
        ends = [r.writes_held[2] for r in self.rules if r.writes_held]
        return min(ends) if ends else None

    def header_lines(self, target: str) -> list[str]:
        """The comment header every rendered file starts with."""
        return [f"Generated by `strangler export {target}` from {self.source} (sha256 {self.sha256[:16]}).",
                f"Ledger: {self.ledger_position}.",
                "Do not edit: change routes.yaml (or `strangler shift`) and export again."]


def load_plan(path: str | Path) -> Plan:
    """The plan of a routes file (ExportError with the router's message if it is invalid)."""
    p = Path(path)
    try:
        config = load_config(p)
    except ConfigError as exc:
        raise ExportError(str(exc)) from None
    return build_plan(config, source=str(p), sha256=hashlib.sha256(p.read_bytes()).hexdigest())


def build_plan(config: Config, *, source: str, sha256: str) -> Plan:
    backends = tuple(_backend(u) for u in config.upstreams.values())
    rules = tuple(_rule(i, r, config) for i, r in enumerate(match_order(config.routes)))
    header = config.backend_header.lower() if config.backend_header else None
    return Plan(source=source, sha256=sha256, ledger_position=_ledger_position(config.ledger_path, sha256),
                backends=backends, rules=rules, backend_header=header,
                ownership_source=str(config.ownership_path) if config.ownership_path else None)


def _ledger_position(path: Path, sha256: str) -> str:
    entries = ledger.tail(path, 200)
    if not entries:
        return f"no entries in {path}"
    last = entries[-1]
    mine = next((e for e in reversed(entries) if e.get("config_sha256") == sha256), None)
    where = (f"this file is the result of the entry at {mine.get('time')} ({mine.get('actor')}: "
             f"{mine.get('route')} {mine.get('new')})") if mine else "this file matches no recent entry"
    sha = str(last.get("config_sha256") or "-")[:16]
    return f"last entry {last.get('time')} (route {last.get('route')}, config sha256 {sha}); {where}"


def _backend(u: Upstream) -> Backend:
    if u.url.startswith("https:"):
        raise ExportError(f"upstream {u.name!r} is https ({u.url}): exporting https upstreams "
                          "(TLS settings, client certificates) is not supported yet — fix: export "
                          "with an http:// URL for it, or keep Strangler's router for this upstream")
    _plain(u.name, f"upstream name {u.name!r}")
    endpoints = u.endpoints or ()
    servers = tuple(Server(host=e.host, port=e.port) for e in endpoints) or (Server(host=u.host, port=u.port),)
    health = u.health
    return Backend(name=u.name, servers=servers, connect_timeout=u.connect_timeout,
                   read_timeout=u.read_timeout,
                   host_header="client" if u.host_header == "client" else f"{servers[0].host}:{servers[0].port}",
                   failures=u.breaker.failures, open_for=u.breaker.open_for,
                   health_path=health.path if health else None,
                   health_interval=health.interval if health else 2.0,
                   fall=health.fall if health else 3, rise=health.rise if health else 2)


def _rule(index: int, r: Route, config: Config) -> Rule:
    _plain(r.salt, f"route {r.name!r}: salt {r.salt!r}")
    primary = r.backends[0][0]
    override = None
    if r.override_header or r.override_cookie:
        candidate = r.candidate or primary
        never = primary if candidate != primary else next((n for n, _ in r.backends if n != primary), primary)
        override = Override(header=r.override_header, cookie=r.override_cookie, always=candidate, never=never)
    anonymous = config.anonymous_cohort
    key = CohortKey(header=r.cohort_header, cookie=r.cohort_cookie,
                    anonymous_cookie=anonymous.cookie if anonymous else None,
                    anonymous_max_age=anonymous.max_age if anonymous else 0,
                    new_anonymous=anonymous is not None and r.splits)
    writes_to, held = None, None
    if r.writes is not None and config.ownership is not None:
        group = config.ownership.groups[r.writes]
        writes_to = group.owner
        if group.held() and group.hold is not None:
            held = (group.name, group.hold.retry_after(), group.hold.until)
    shadow = r.shadow
    return Rule(index=index, name=r.name, exact=r.match.exact, prefix=r.match.prefix,
                methods=r.match.methods, host=r.match.host, header=r.match.header,
                backends=r.backends, slices=tuple(balance.cut_points(r.backends)), salt=r.salt,
                key=key, override=override, writes_to=writes_to, writes_held=held, fallback=r.fallback,
                retries=r.retries, retry_methods=r.retry_methods or SAFE_METHODS, deadline=r.deadline,
                max_body_bytes=r.max_body_bytes,
                mirror_to=shadow.to if shadow and shadow.percent > 0 else None,
                mirror_percent=shadow.percent if shadow else 0.0,
                mirror_methods=shadow.methods if shadow else frozenset(),
                identity=r.identity, rate_limited=r.rate_limit is not None,
                websocket=r.websocket is not None, header_routes=tuple((h.name, h.header, h.kind, h.value, h.to) for h in r.header_routes))


def _plain(value: str, what: str) -> None:
    if not _PLAIN.match(value):
        raise ExportError(f"{what} has characters the exported configs cannot carry as they are — "
                          "fix: use letters, digits and _ . : / - only")


def held_body(route: str, group: str, wait: int) -> str:
    """The router's 503 `writes_held` answer (router/proxy.py), as JSON without quotes to escape."""
    return (f'{{"error": "writes_held", "detail": "writes to route {route} are held: ownership of {group} '
            f'is moving; retry after {wait} s"}}')


def shared_limits(r: Rule, *, target: str, regexes: str, strips: str = "removed",
                  fallback: bool = False, regex_kinds: tuple[str, ...] = ("regex",)) -> list[str]:
    """The limits every target has, worded for `target`: the identity bridge, the fallback (when
    `fallback`: the target has none), rate limits, and header-route patterns handed to the
    target's own regex engine (`regexes`, for the `regex_kinds` it writes as regexes)."""
    out = []
    if r.identity:
        out.append(f"route {r.name}: identity bridge not exported (the header is {strips}, never signed)")
    if fallback and r.fallback:
        out.append(f"route {r.name}: fallback to {r.fallback} not exported")
    if r.rate_limited:
        out.append(f"route {r.name}: rate limit not exported")
    if any(kind in regex_kinds for _, _, kind, _, _ in r.header_routes):
        kinds = "" if regex_kinds == ("regex",) else f" ({' and '.join(regex_kinds)})"
        out.append(f"route {r.name}: header route regexes{kinds} are handed to {target}'s {regexes} as "
                   "written (the router uses Python's re: keep to the syntax both share)")
    return out
