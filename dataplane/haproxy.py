"""Plan → haproxy.cfg (HAProxy ≥ 2.4 built with Lua, as Debian's is) and strangler.lua.

Place in the flow: `strangler export haproxy` and `dataplane.run`. HAProxy has no hash of
nginx's kind (its crc32/xxh32/murmur3 are others), so strangler.lua adds nginx's
MurmurHash2 as the converter `lua.strangler_hash(<salt>)`; the cut points are written in
the config as integers (router.balance.cut_points), so HAProxy compares the same numbers
nginx and the router do. How a request goes:
1. the path is normalised (`normalize-uri`: the router's dot segments, double slashes,
   percent case), then `txn.route` is set by the first route that fits, in matching order;
2. `txn.key`: the first non-empty of the cohort header, the cohort cookie, the anonymous
   cookie, else a fresh uuid (and its Set-Cookie) or the client address;
3. `txn.backend`: writes > header route > override > the slice holding `txn.key`'s hash; `use_backend`.
The slices' upper bounds are not in haproxy.cfg but in a map beside it (`cuts_map`, keys
`r<i>.<backend>`), so new weights reach a running HAProxy through its runtime API
(`set map`, dataplane/follow.py) without a reload: the config text does not change with them.
"""

from __future__ import annotations

from importlib import resources

from dataplane.errors import ExportError
from dataplane.model import (
    IDENTITY_HEADER,
    WRITE_METHODS,
    Backend,
    Plan,
    Rule,
    held_body,
    shared_limits,
)
from router.match import prefix_forms

FEATURES: tuple[tuple[str, str, str], ...] = (
    ("routes in the router's matching order", "yes", "acls, first route that fits sets txn.route"),
    ("weights and sticky cohorts (same users)", "yes", "strangler.lua: nginx's MurmurHash2; cut points in a map, changed live"),
    ("overrides (header/cookie always/never)", "yes", "acls on the header, then the cookie"),
    ("anonymous cohort cookie", "yes", "uuid as the new key, Set-Cookie"),
    ("writes to the ownership group's owner", "yes", "acl on the method (a static owner: export again after a flip)"),
    ("fallback on failure (replayable methods)", "no", "use_backend is decided before the attempt; no re-dispatch to another backend"),
    ("retries on replayable methods only", "partly", "retry-on conn-failure per backend: only attempts no server saw, so any method is safe"),
    ("timeouts", "yes", "per backend: timeout connect / timeout server"),
    ("deadline over every attempt", "partly", "timeout server per attempt"),
    ("mirroring (shadow copy)", "no", "HAProxy 2.6 mirrors only through an SPOE agent"),
    ("shadow diffing", "no", "nothing compares two answers"),
    ("identity bridge (signed X-Strangler-Identity)", "no", "needs the router's key and a call to the monolith"),
    ("identity header stripped from clients", "yes", "http-request del-header"),
    ("breakers", "partly", "active checks take a server out; no error-rate breaker"),
    ("active health checks", "yes", "option httpchk, inter/fall/rise"),
    ("rate limits", "no", "stick tables count differently; not exported"),
    ("header routes (a rollout's setHeaderRoute)", "yes", "acls on the header's first value: -m str, -m beg, -m reg"),
    ("held writes during an ownership flip (503)", "yes", "http-request return 503 + Retry-After on write methods while the file holds them"),
    ("path canonicalisation and smuggling refusal", "partly", "normalize-uri (dot segments, slashes, percent case); no refusal"),
)


def lua_source() -> str:
    """strangler.lua: nginx's MurmurHash2 for HAProxy (write it beside haproxy.cfg)."""
    return resources.files("dataplane").joinpath("strangler.lua").read_text()


def limits(plan: Plan) -> list[str]:
    """What this plan asks for that HAProxy will not do, route by route."""
    out = []
    for r in plan.rules:
        out += shared_limits(r, target="HAProxy", regexes="PCRE", strips="stripped", fallback=True)
        if r.mirror_to:
            out.append(f"route {r.name}: mirroring to {r.mirror_to} not exported")
    return out


CUTS_FILE = "strangler-cuts.map"


def cuts_map(plan: Plan) -> str:
    """The map of what changes with the weights (`cut_entries`): `<key> <integer>` per line."""
    return "".join(f"{key} {cut}\n" for key, cut in cut_entries(plan).items())


def cut_entries(plan: Plan) -> dict[str, int]:
    """What changes with the weights: each slice's bound, and whether the route splits (1/0:
    anonymous visitors get a fresh cohort only then, as in the router)."""
    out: dict[str, int] = {}
    for r in plan.rules:
        if len(r.backends) > 1:
            out.update((f"r{r.index}.{name}", cut) for name, cut in r.every_cut)
            if r.key.anonymous_cookie:
                out[f"r{r.index}.splits"] = int(r.key.new_anonymous)
    return out


def render(plan: Plan, *, listen: str = "127.0.0.1:8080", lua_path: str = "/etc/haproxy/strangler.lua",
           cuts_path: str | None = None, extra_global: tuple[str, ...] = ()) -> str:
    """The whole haproxy.cfg; `lua_path` is where strangler.lua will be, `cuts_path` the
    cuts map (default: strangler-cuts.map beside it)."""
    cuts = cuts_path or f"{lua_path.rpartition('/')[0] or '.'}/{CUTS_FILE}"
    out = [f"# {line}" for line in plan.header_lines("haproxy")]
    out += ["global", f"    lua-load {lua_path}",
            "    expose-experimental-directives  # normalize-uri is marked experimental in 2.4-2.6", *[f"    {g}" for g in extra_global], "",
            "defaults", "    mode http", "    option http-keep-alive", "    timeout client 30s",
            "    timeout http-request 10s", "    timeout connect 2s", "    timeout server 30s",
            "    timeout tunnel 300s", "",
            "frontend strangler_in", f"    bind {listen}",
            "    # one JSON line per request when a `log` target is set (what dataplane/numbers.py reads)",
            "    log global",
            "    log-format '{\"route\":\"%[var(txn.route)]\",\"backend\":\"%b\",\"status\":%ST,\"ms\":%Ta}'",
            "    # the router's canonical path: dot segments, double slashes, percent case",
            "    http-request normalize-uri path-strip-dotdot",
            "    http-request normalize-uri path-merge-slashes",
            "    http-request normalize-uri percent-decode-unreserved",
            "    http-request normalize-uri percent-to-uppercase",
            f"    http-request del-header {IDENTITY_HEADER}  # only the router signs identities",
            "    http-request set-header X-Forwarded-For %[src]",
            "    http-request set-header X-Forwarded-Proto http",
            "    http-request set-header X-Forwarded-Host %[req.hdr(host)]"]
    for r in plan.rules:
        out += _select(r)
    out.append("    http-request return status 404 content-type application/json string "
               "'{\"error\": \"no_route\", \"detail\": \"no route matches this request\"}' "
               "if !{ var(txn.route) -m found }")
    for r in plan.rules:
        out += _choose(r, cuts)
    out.append("    use_backend %[var(txn.backend)]")
    if plan.backend_header:
        out.append(f"    http-response set-header {plan.backend_header} %[var(txn.backend)]")
    anonymous = next((r.key for r in plan.rules if r.key.anonymous_cookie and len(r.backends) > 1), None)
    if anonymous is not None:
        out.append(f'    http-response add-header Set-Cookie "{anonymous.anonymous_cookie}=%[var(txn.key)]; '
                   f'Path=/; Max-Age={anonymous.anonymous_max_age}; HttpOnly; SameSite=Lax" '
                   "if { var(txn.newcohort) -m bool }")
    out.append("")
    retries: dict[str, int] = {}
    for r in plan.rules:
        for name, _ in r.backends:
            retries[name] = max(retries.get(name, 0), r.retries)
    for b in plan.backends:
        out += _backend(b, retries.get(b.name, 0))
    return "\n".join(out)


def _select(r: Rule) -> list[str]:
    i = r.index
    out = [f"    # route {r.name}"]
    if r.exact is not None:
        out.append(f"    acl r{i}_path path {_arg(r.exact)}")
    else:
        whole, with_slash = prefix_forms(r.prefix or "/")
        out += [f"    acl r{i}_path path {_arg(whole)}", f"    acl r{i}_path path_beg {_arg(with_slash)}"]
    conds = [f"r{i}_path"]
    if r.methods:
        out.append(f"    acl r{i}_method method {' '.join(sorted(r.methods))}")
        conds.append(f"r{i}_method")
    if r.host:
        out.append(f"    acl r{i}_host req.hdr(host),field(1,:),lower -m str {_arg(r.host)}")
        conds.append(f"r{i}_host")
    if r.header:
        name, value = r.header
        out.append(f"    acl r{i}_header req.fhdr({_arg(name)}) " + (f"-m str {_arg(value)}" if value is not None
                                                                     else "-m found"))
        conds.append(f"r{i}_header")
    out.append(f"    http-request set-var(txn.route) str(r{i}) if !{{ var(txn.route) -m found }} {' '.join(conds)}")
    out.append(f"    acl is_r{i} var(txn.route) -m str r{i}")
    return out


def _choose(r: Rule, cuts: str) -> list[str]:
    i, k = r.index, r.key
    on = f"is_r{i}"
    none = "!{ var(txn.backend) -m found }"
    out = [f"    # route {r.name}: writes > header route > override > cohort > weight"]
    if r.max_body_bytes is not None:
        out.append(f"    http-request deny deny_status 413 if {on} {{ req.hdr_val(content-length) gt {r.max_body_bytes} }}")
    if r.writes_held is not None:  # the router's 503 while the group's ownership moves
        group, wait, _ = r.writes_held
        out.append(f"    http-request return status 503 content-type application/json hdr Retry-After {wait} "
                   f"string '{held_body(r.name, group, wait)}' if {on} {{ method {' '.join(sorted(WRITE_METHODS))} }}")
    if r.writes_to is not None:
        out.append(f"    http-request set-var(txn.backend) str({r.writes_to}) if {on} "
                   f"{{ method {' '.join(sorted(WRITE_METHODS))} }}")
    for _, header, kind, value, to in r.header_routes:
        h = f"req.fhdr({_arg(header)},1)"
        out.append(f"    http-request set-var(txn.backend) str({to}) if {on} {none} "
                   f"{{ {h} {_acl_match(kind, value)} }}")
    ov = r.override
    if ov is not None:
        if ov.header:
            h = f"req.fhdr({_arg(ov.header)},1)"
            out.append(f"    http-request set-var(txn.override) {h} if {on} {{ {h} -m len gt 0 }}")
        if ov.cookie:
            c = f"req.cook({_arg(ov.cookie)})"
            out.append(f"    http-request set-var(txn.override) {c} if {on} !{{ var(txn.override) -m found }} "
                       f"{{ {c} -m len gt 0 }}")
        out += [f"    http-request set-var(txn.backend) str({ov.always}) if {on} {none} "
                "{ var(txn.override) -m str always }",
                f"    http-request set-var(txn.backend) str({ov.never}) if {on} {none} "
                "{ var(txn.override) -m str never }"]
    if len(r.backends) == 1:  # nothing to split, now or after a shift
        return [*out, f"    http-request set-var(txn.backend) str({r.slices[0][0]}) if {on} {none}"]
    nokey = "!{ var(txn.key) -m found }"
    if k.header:
        h = f"req.fhdr({_arg(k.header)},1)"
        out.append(f"    http-request set-var(txn.key) {h} if {on} {none} {{ {h} -m len gt 0 }}")
    for cookie in (k.cookie, k.anonymous_cookie):
        if cookie:
            c = f"req.cook({_arg(cookie)})"
            out.append(f"    http-request set-var(txn.key) {c} if {on} {none} {nokey} {{ {c} -m len gt 0 }}")
    if k.anonymous_cookie:  # a fresh cohort only while the route splits (`r<i>.splits` in the map)
        fresh = f"{on} {none} {nokey} {{ str(r{i}.splits),map_str_int({_arg(cuts)},0) -m int gt 0 }}"
        out += [f"    http-request set-var(txn.newcohort) bool(1) if {fresh}",
                f"    http-request set-var(txn.key) uuid if {fresh}"]
    out.append(f"    http-request set-var(txn.key) src if {on} {none} {nokey}")
    out.append(f"    http-request set-var(txn.hash) var(txn.key),lua.strangler_hash({r.salt}) if {on} {none}")
    for name, _ in r.every_cut:  # hash < bound, as `hash - bound < 0`: acls compare with constants only
        out += [f"    http-request set-var(txn.cut) str(r{i}.{name}),map_str_int({_arg(cuts)},0) if {on} {none}",
                f"    http-request set-var(txn.backend) str({name}) if {on} {none} "
                "{ var(txn.hash),sub(txn.cut) -m int lt 0 }"]
    return out


def _backend(b: Backend, retries: int) -> list[str]:
    out = [f"backend {b.name}", f"    timeout connect {_ms(b.connect_timeout)}",
           f"    timeout server {_ms(b.read_timeout)}"]
    if b.host_header != "client":
        out.append(f"    http-request set-header Host {b.host_header}")
    if retries:
        out += [f"    retries {retries}", "    retry-on conn-failure"]
    check = ""
    if b.health_path:
        out.append(f"    option httpchk GET {b.health_path}")
        check = f" check inter {_ms(b.health_interval)} fall {b.fall} rise {b.rise}"
    for n, s in enumerate(b.servers):
        out.append(f"    server s{n} {s.host}:{s.port}{check}")
    return [*out, ""]


def _ms(seconds: float) -> str:
    return f"{int(round(seconds * 1000))}ms"


def _acl_match(kind: str, value: str) -> str:
    """An acl match of a header value as the router's header route does (strong quotes: HAProxy
    then keeps backslashes and spaces as written)."""
    if "'" in value or "\n" in value:
        raise ExportError(f"header route value {value!r} cannot be written into haproxy.cfg — fix: "
                          "avoid single quotes")
    flag = {"exact": "-m str", "prefix": "-m beg", "regex": "-m reg"}[kind]
    return f"{flag} '{f'^(?:{value})$' if kind == 'regex' else value}'"


def _arg(text: str) -> str:
    if any(c in text for c in " \t,()'\"\\#{}"):
        raise ExportError(f"{text!r} cannot be written into haproxy.cfg as it is — fix: avoid spaces, "
                          "commas, parentheses, quotes and braces in match values and names")
    return text
