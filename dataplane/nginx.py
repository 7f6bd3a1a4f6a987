"""Plan → an nginx `http { }` configuration (nginx ≥ 1.18, open-source modules only).

Place in the flow: `strangler export nginx` and `dataplane.run`. How a request goes:
1. `$strangler_route`: one `map` over "METHOD HOST FLAGS URI" whose regexes are the routes
   in the router's matching order (map tries regexes in the order written: first wins);
   FLAGS are one 0/1 per header a route matches on.
2. `try_files` hands the request to the route's named location (`@r<i>` or, for methods the
   route may replay, `@r<i>_safe` with retries and the fallback) without touching its URI,
   method or body.
3. The backend: override > cohort > weight, as router/balance.py: `split_clients` over
   "salt:key" with the slices in balance.slices' order, so nginx's cut points *are* the
   router's; the key is the first non-empty of the cohort header, the cohort cookie, the
   anonymous cookie, else a new `$request_id` (and its Set-Cookie) or the client address.
"""

from __future__ import annotations

import re

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

# What nginx does with each of the router's features (README's table is this one).
FEATURES: tuple[tuple[str, str, str], ...] = (
    ("routes in the router's matching order", "yes", "one regex map, first match wins"),
    ("weights and sticky cohorts (same users)", "yes", "split_clients: MurmurHash2 of salt:key, nginx's own"),
    ("overrides (header/cookie always/never)", "yes", "map"),
    ("anonymous cohort cookie", "yes", "$request_id as the new key, Set-Cookie"),
    ("writes to the ownership group's owner", "yes", "map on the method (a static owner: export again after a flip)"),
    ("fallback on failure (replayable methods)", "yes", "error_page 502 504 → the fallback upstream"),
    ("retries on replayable methods only", "yes", "proxy_next_upstream in the _safe location only"),
    ("timeouts", "partly", "per location: the largest of the route's backends' timeouts"),
    ("deadline over every attempt", "partly", "proxy_next_upstream_timeout"),
    ("mirroring (shadow copy)", "yes", "mirror; sampled by split_clients on $request_id"),
    ("shadow diffing", "no", "nginx sends the copy and drops the answer: nothing compares the two"),
    ("identity bridge (signed X-Strangler-Identity)", "no", "needs the router's key and a call to the monolith"),
    ("identity header stripped from clients", "yes", "proxy_set_header ... \"\""),
    ("breakers", "partly", "passive: max_fails/fail_timeout per server"),
    ("active health checks", "no", "nginx Plus only"),
    ("rate limits", "no", "limit_req counts differently (leaky bucket per zone); not exported"),
    ("header routes (a rollout's setHeaderRoute)", "yes", "map on the header: exact, ~^prefix, ~^(?:regex)$"),
    ("held writes during an ownership flip (503)", "yes", "return 503 + Retry-After on write methods while the file holds them"),
    ("path canonicalisation and smuggling refusal", "partly", "nginx matches on its own normalised $uri"),
)


def limits(plan: Plan) -> list[str]:
    """What this plan asks for that nginx will not do, route by route."""
    out = []
    for r in plan.rules:
        out += shared_limits(r, target="nginx", regexes="PCRE", strips="stripped")
        if r.mirror_to:
            out.append(f"route {r.name}: mirrored to {r.mirror_to}, but responses are not diffed")
    if any(b.health_path for b in plan.backends):
        out.append("active health checks not exported (nginx Plus only); passive max_fails is")
    return out


def render(plan: Plan, *, listen: str = "127.0.0.1:8080") -> str:
    """The `http { }` block's content (no `events`/`http` wrapper: see `wrap`)."""
    for b in plan.backends:
        _name(b.name)
    out = [f"# {line}" for line in plan.header_lines("nginx")]
    # one JSON line per request, what the canary gate reads (dataplane/numbers.py): which route
    # (its location, @r<i>[_safe]), which backend answered, the status, the time in seconds
    out += ["", "log_format strangler_json escape=json '{\"route\":\"$strangler_location\",\"backend\":"
            "\"$strangler_backend\",\"status\":$status,\"s\":$request_time}';"]
    out += ["proxy_http_version 1.1;", "map $http_upgrade $strangler_connection { default upgrade; \"\" \"\"; }", ""]
    for b in plan.backends:
        out += _upstream(b)
    out += ["map $strangler_backend $strangler_host {"]
    out += [f"    {b.name} {'$http_host' if b.host_header == 'client' else b.host_header};" for b in plan.backends]
    out += ["}", ""]
    out += _route_map(plan)
    for r in plan.rules:
        out += _backend_choice(r)
    out += mirror_samples(plan)
    out += ["server {", f"    listen {listen};", "    root /nonexistent;  # try_files below looks for no file",
            "    location / {",
            # try_files is how a request reaches a named location untouched, but it looks for
            # the file first: one stat() per request (~5% of nginx's CPU per request in
            # benchmarks/router.py). Caching the miss leaves one stat a minute.
            "        open_file_cache max=16;", "        open_file_cache_errors on;",
            "        try_files /.strangler-route @$strangler_location;", "    }",
            "    location @none {", "        default_type application/json;",
            "        return 404 '{\"error\": \"no_route\", \"detail\": \"no route matches this request\"}';", "    }"]
    backends = {b.name: b for b in plan.backends}
    for r in plan.rules:
        out += _locations(r, backends, plan)
    out += ["}", ""]
    return "\n".join(out)


def wrap(http: str, *, prefix: str, access_log: str | None = None) -> str:
    """A whole nginx.conf around `render`'s output, with every path under `prefix` (so nginx
    runs unprivileged, on loopback, leaving nothing behind: dataplane.run); the access log in
    `render`'s JSON format at `access_log` (default: access.jsonl under `prefix`)."""
    inner = "\n".join(f"    {line}" if line else "" for line in http.splitlines())
    return "\n".join([
        "daemon off;", "worker_processes 1;", f"pid {prefix}/nginx.pid;", f"error_log {prefix}/error.log warn;",
        "events { worker_connections 1024; }", "http {",
        f"    client_body_temp_path {prefix}/body;",
        f"    proxy_temp_path {prefix}/proxy;", f"    fastcgi_temp_path {prefix}/fastcgi;",
        f"    uwsgi_temp_path {prefix}/uwsgi;", f"    scgi_temp_path {prefix}/scgi;",
        inner, f"    access_log {access_log or prefix + '/access.jsonl'} strangler_json;", "}", ""])


def _upstream(b: Backend) -> list[str]:
    lines = [f"upstream {b.name} {{"]
    for s in b.servers:
        lines.append(f"    server {s.host}:{s.port} max_fails={b.failures} fail_timeout={_secs(b.open_for)};")
    return [*lines, "    keepalive 32;", "}", ""]


def _route_map(plan: Plan) -> list[str]:
    headers = [r for r in plan.rules if r.header is not None]
    flags = ""
    out: list[str] = []
    for r in headers:
        assert r.header is not None
        name, value = r.header
        var = f"$http_{_var(name)}"
        out.append(f"map {var} $strangler_h{r.index} {{")
        out += ([f"    {_quote(value)} 1;", "    default 0;"] if value is not None else
                ['    "" 0;', "    default 1;"])
        out += ["}", ""]
        flags += f"$strangler_h{r.index}"
    source = f"$request_method $host {flags} $uri" if headers else "$request_method $host $uri"
    out.append(f'map "{source}" $strangler_route {{')
    out.append("    default none;")
    for r in plan.rules:
        method = "(?:" + "|".join(sorted(r.methods)) + ")" if r.methods else "[^ ]+"
        host = re.escape(r.host) if r.host else "[^ ]*"
        flag = ""
        if headers:
            flag = "".join("1" if h.index == r.index else "." for h in headers) + " "
        if r.exact is not None:
            path = re.escape(r.exact)
        else:
            whole, with_slash = prefix_forms(r.prefix or "/")
            path = f"(?:{re.escape(whole)}|{re.escape(with_slash)}.*)"
        out.append(f"    {_quote(f'~^{method} {host} {flag}{path}$')} r{r.index};  # {r.name}")
    out += ["}", "", 'map "$strangler_route $request_method" $strangler_location {', "    default none;"]
    for r in plan.rules:
        for m in sorted(r.retry_methods):
            out.append(f'    "r{r.index} {m}" r{r.index}_safe;')
        out.append(f'    "~^r{r.index} " r{r.index};')
    return [*out, "}", ""]


def _backend_choice(r: Rule) -> list[str]:
    """`$r<i>_backend`: writes > header route > override > cohort > weight, as router/proxy.py
    decides."""
    i = r.index
    out: list[str] = []
    if len(r.slices) == 1:
        pick = r.slices[0][0]
    else:
        out += _key(r)
        out.append(f'split_clients "{r.salt}:$r{i}_key" $r{i}_split {{')
        for name, weight in r.percent_slices[:-1]:
            out.append(f"    {weight}% {name};")
        out += [f"    * {r.percent_slices[-1][0]};", "}", ""]
        pick = f"$r{i}_split"
    if r.override is not None:
        ov = r.override
        if ov.header and ov.cookie:
            out += [f"map $http_{_var(ov.header)} $r{i}_override {{",
                    f'    "" $cookie_{_cookie(ov.cookie)};', f"    default $http_{_var(ov.header)};", "}", ""]
            source = f"$r{i}_override"
        else:
            source = f"$http_{_var(ov.header)}" if ov.header else f"$cookie_{_cookie(ov.cookie or '')}"
        out += [f"map {source} $r{i}_pick {{", f"    always {ov.always};", f"    never {ov.never};",
                f"    default {pick};", "}", ""]
        pick = f"$r{i}_pick"
    # header routes, first match wins: built from the last, each map falling through to the next
    for n, (_, header, kind, value, to) in reversed(list(enumerate(r.header_routes))):
        out += [f"map $http_{_var(header)} $r{i}_h{n} {{", f"    {_map_pattern(kind, value)} {to};",
                f"    default {pick};", "}", ""]
        pick = f"$r{i}_h{n}"
    if r.writes_held is not None:  # `if` in the locations answers them: nothing is forwarded
        out += [f"map $request_method $r{i}_held {{", *[f"    {m} 1;" for m in sorted(WRITE_METHODS)],
                '    default "";', "}", ""]
    if r.writes_to is not None:
        out.append(f"map $request_method $r{i}_backend {{")
        out += [f"    {m} {r.writes_to};" for m in sorted(WRITE_METHODS)]
        out += [f"    default {pick};", "}", ""]
    else:
        out += [f"map $request_method $r{i}_backend {{ default {pick}; }}", ""]
    return out


def _key(r: Rule) -> list[str]:
    """`$r<i>_key`: the first non-empty source (an empty header counts as absent, as in the
    router), and `$r<i>_setcookie` for a new anonymous visitor."""
    i, k = r.index, r.key
    sources = []
    if k.header:
        sources.append(f"$http_{_var(k.header)}")
    if k.cookie:
        sources.append(f"$cookie_{_cookie(k.cookie)}")
    if k.anonymous_cookie:
        sources.append(f"$cookie_{_cookie(k.anonymous_cookie)}")
    last = "$request_id" if k.new_anonymous else "$remote_addr"
    out: list[str] = []
    current = sources[0] if sources else last
    for n, nxt in enumerate(sources[1:], start=1):
        out += [f"map {current} $r{i}_k{n} {{", f'    "" {nxt};', f"    default {current};", "}", ""]
        current = f"$r{i}_k{n}"
    if sources:
        out += [f"map {current} $r{i}_key {{", f'    "" {last};', f"    default {current};", "}", ""]
    else:
        out += [f"map $request_method $r{i}_key {{ default {last}; }}", ""]
    if k.new_anonymous and k.anonymous_cookie:
        cookie = (f"{k.anonymous_cookie}=$request_id; Path=/; Max-Age={k.anonymous_max_age}; "
                  "HttpOnly; SameSite=Lax")
        out += [f"map {current} $r{i}_setcookie {{", f'    "" "{cookie}";', '    default "";', "}", ""]
    return out


def _locations(r: Rule, backends: dict[str, Backend], plan: Plan) -> list[str]:
    used = [backends[n] for n, _ in r.backends] + ([backends[r.writes_to]] if r.writes_to else [])
    connect = max(b.connect_timeout for b in used)
    read = max(b.read_timeout for b in used)
    out: list[str] = []
    for safe in (False, True):
        name = f"@r{r.index}_safe" if safe else f"@r{r.index}"
        body = [f"set $strangler_backend $r{r.index}_backend;"]
        if r.writes_held is not None:
            group, wait, _ = r.writes_held
            body += [f"if ($r{r.index}_held) {{", f"    add_header Retry-After {wait} always;",
                     f"    return 503 '{held_body(r.name, group, wait)}';", "}", "default_type application/json;"]
        body += _proxy(plan, connect, read)
        if r.max_body_bytes is not None:
            body.append(f"client_max_body_size {r.max_body_bytes};")
        if r.key.new_anonymous and r.key.anonymous_cookie and len(r.slices) > 1:
            body.append(f"add_header Set-Cookie $r{r.index}_setcookie;")
        if safe and r.retries:
            body += ["proxy_next_upstream error timeout;", f"proxy_next_upstream_tries {r.retries + 1};",
                     f"proxy_next_upstream_timeout {_secs(r.deadline)};"]
        else:
            body.append("proxy_next_upstream off;")
        if safe and r.fallback:
            body.append(f"error_page 502 504 = @r{r.index}_fallback;")
        if r.mirror_to and (r.mirror_methods & (r.retry_methods if safe else frozenset())):
            body += [f"mirror /_strangler_mirror/r{r.index};", "mirror_request_body on;"]
        body.append("proxy_pass http://$strangler_backend;")
        out += [f"    location {name} {{  # route {r.name}", *[f"        {b}" for b in body], "    }"]
    if r.fallback:
        fb = [f"set $strangler_backend {r.fallback};", *_proxy(plan, backends[r.fallback].connect_timeout,
                                                              backends[r.fallback].read_timeout),
              "proxy_pass http://$strangler_backend;"]
        out += [f"    location @r{r.index}_fallback {{", *[f"        {b}" for b in fb], "    }"]
    if r.mirror_to:
        sample = int(round(r.mirror_percent * 100))
        methods = "|".join(sorted(r.mirror_methods))
        mb = ["internal;", f"if ($request_method !~ ^({methods})$) {{ return 204; }}",
              f"if ($r{r.index}_mirror = \"\") {{ return 204; }}" if sample < 10000 else "",
              f"proxy_set_header Host {backends[r.mirror_to].host_header};",
              f"proxy_set_header {IDENTITY_HEADER} \"\";",
              f"proxy_pass http://{r.mirror_to}$request_uri;"]
        out += [f"    location = /_strangler_mirror/r{r.index} {{", *[f"        {b}" for b in mb if b], "    }"]
    return out


def mirror_samples(plan: Plan) -> list[str]:
    """split_clients for mirror sampling (in http{}): which requests get a shadow copy."""
    out = []
    for r in plan.rules:
        if r.mirror_to and r.mirror_percent < 100:
            pct = f"{r.mirror_percent:.2f}".rstrip("0").rstrip(".")
            out += [f'split_clients "$request_id" $r{r.index}_mirror {{', f"    {pct}% 1;", '    * "";', "}", ""]
    return out


def _proxy(plan: Plan, connect: float, read: float) -> list[str]:
    lines = ["proxy_set_header Host $strangler_host;",
             f"proxy_set_header {IDENTITY_HEADER} \"\";  # only the router signs identities",
             "proxy_set_header X-Forwarded-For $remote_addr;", "proxy_set_header X-Forwarded-Proto $scheme;",
             "proxy_set_header X-Forwarded-Host $http_host;", "proxy_set_header Upgrade $http_upgrade;",
             "proxy_set_header Connection $strangler_connection;",
             f"proxy_connect_timeout {_secs(connect)};", f"proxy_read_timeout {_secs(read)};"]
    if plan.backend_header:
        lines.append(f"add_header {plan.backend_header} $strangler_backend always;")
    return lines


def _secs(value: float) -> str:
    ms = int(round(value * 1000))
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def _var(header: str) -> str:
    return header.lower().replace("-", "_")


def _cookie(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_]+", name):
        raise ExportError(f"cookie {name!r}: nginx reads cookies as $cookie_<name>, which allows only "
                          "letters, digits and _ — fix: rename the cookie, or export to haproxy")
    return name


def _name(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
        raise ExportError(f"upstream name {name!r} cannot name an nginx upstream — fix: use letters, "
                          "digits, _ and - only")
    return name


MAP_WORDS = ("default", "hostnames", "include", "volatile")  # map's own parameters


def _map_pattern(kind: str, value: str) -> str:
    """A `map` source pattern matching a header value as the router's header route does."""
    if kind == "prefix":
        return _quote("~^" + re.escape(value))
    if kind == "regex":
        return _quote(f"~^(?:{value})$")
    if value.startswith("~") or value in MAP_WORDS:
        return _quote("\\" + value)  # a literal value, not a regex or a parameter
    return _quote(value)


def _quote(text: str) -> str:
    if '"' in text or "\\\\" in text:
        raise ExportError(f"{text!r} cannot be written into nginx.conf as it is — fix: avoid quotes "
                          "and backslashes in match values")
    return f'"{text}"'
