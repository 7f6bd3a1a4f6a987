"""Plan → Kubernetes Gateway API `HTTPRoute`s (gateway.networking.k8s.io/v1).

Place in the flow: `strangler export gateway-api [--gateway [NS/]NAME] [--channel ...]`. One
HTTPRoute per route of routes.yaml, attached to the Gateway given (`strangler` by default); each
upstream is a Service named like it, on its URL's port. On the experimental channel a rule also
carries `retry` (GEP-1731), only on rules that match the route's replayable methods, as the
router retries. Inside a route the rules are, as the router
decides: writes (a method match, which the Gateway API ranks first), header routes, the
override's always/never, then the weighted rule. Weights are per request: the Gateway API
has no cohort hash, so users are not kept on one backend.
"""

from __future__ import annotations

import re
from typing import Any

from dataplane import k8s
from dataplane.errors import ExportError
from dataplane.model import IDENTITY_HEADER, WRITE_METHODS, Plan, Rule, shared_limits

API_VERSION = "gateway.networking.k8s.io/v1"
GATEWAY = "strangler"  # the parentRef every HTTPRoute names unless --gateway says otherwise
CHANNELS = ("standard", "experimental")  # the experimental channel's HTTPRoute has rules[].retry
MAX_RULES = 16  # the CRD's limit per HTTPRoute

FEATURES: tuple[tuple[str, str, str], ...] = (
    ("routes in the router's matching order", "partly", "one HTTPRoute per route; the Gateway ranks by exact path, longest prefix, method, headers"),
    ("weights and sticky cohorts (same users)", "partly", "backendRefs weights, chosen per request: no cohorts, users move between backends"),
    ("overrides (header/cookie always/never)", "partly", "header matches; the cookie as a RegularExpression on Cookie (implementation-specific)"),
    ("anonymous cohort cookie", "no", "no cohorts to keep"),
    ("writes to the ownership group's owner", "yes", "method matches (a static owner: export again after a flip)"),
    ("fallback on failure (replayable methods)", "no", "no failover between backendRefs"),
    ("retries on replayable methods only", "partly", "--channel experimental: rules[].retry on method-matched rules; standard: none"),
    ("timeouts", "partly", "rules[].timeouts.request: the route's deadline, not per upstream"),
    ("deadline over every attempt", "yes", "timeouts.request"),
    ("mirroring (shadow copy)", "partly", "RequestMirror with percent on a rule for the shadow's methods; not beside header routes/overrides"),
    ("shadow diffing", "no", "nothing compares two answers"),
    ("identity bridge (signed X-Strangler-Identity)", "no", "needs the router's key and a call to the monolith"),
    ("identity header stripped from clients", "yes", "RequestHeaderModifier remove"),
    ("breakers", "no", "not in the Gateway API"),
    ("active health checks", "no", "the Service's readiness probes instead"),
    ("rate limits", "no", "not in the Gateway API"),
    ("header routes (a rollout's setHeaderRoute)", "partly", "header matches: Exact; prefix and regex as RegularExpression (implementation-specific)"),
    ("held writes during an ownership flip (503)", "no", "a live operation: nginx/HAProxy under `strangler up --data-plane` hold writes; here, export again after the flip"),
    ("path canonicalisation and smuggling refusal", "partly", "the implementation's own path normalisation"),
)


def parent_ref(gateway: str = GATEWAY) -> dict[str, str]:
    """`NAME` or `NAMESPACE/NAME` → an HTTPRoute parentRef; refused unless both are DNS labels."""
    namespace, name = k8s.gateway_name(gateway)
    return {"name": name, "namespace": namespace} if namespace else {"name": name}


def limits(plan: Plan, *, gateway: str = GATEWAY, channel: str = "standard") -> list[str]:
    """What this plan asks for that an HTTPRoute will not do, route by route."""
    out = [f"upstreams become Service refs named like the upstream, port from the URL "
           f"({', '.join(f'{n}:{p}' for n, p in map(k8s.service, plan.backends))}); "
           f"parentRefs name the Gateway {gateway!r}"]
    for r in plan.rules:
        if len(r.percent_slices) > 1:
            out.append(f"route {r.name}: weights are per request — sticky cohorts: no "
                       "(same users as the router: no)")
        out += shared_limits(r, target="the implementation", regexes="RegularExpression dialect",
                             fallback=True, regex_kinds=("prefix", "regex"))
        if r.mirror_to and _mirror(r) is None:
            out.append(f"route {r.name}: mirroring to {r.mirror_to} not exported (a rule for only "
                       f"{', '.join(sorted(r.mirror_methods))} would outrank its header routes/overrides)")
        elif r.mirror_to:
            out.append(f"route {r.name}: mirrored to {r.mirror_to} "
                       f"({', '.join(sorted(r.mirror_methods))}), responses not diffed")
        if r.retries and channel != "experimental":
            out.append(f"route {r.name}: retries not exported (rules[].retry is experimental-channel "
                       "only: --channel experimental)")
        if r.override is not None and r.override.cookie:
            out.append(f"route {r.name}: the override cookie is a RegularExpression on Cookie "
                       "(implementation-specific support)")
    return out


def documents(plan: Plan, *, gateway: str = GATEWAY, channel: str = "standard") -> list[dict[str, Any]]:
    if channel not in CHANNELS:
        raise ExportError(f"--channel {channel!r} is not a Gateway API channel — fix: give standard or experimental (the channel of the "
                          "Gateway API CRDs installed in the cluster)")
    ports = dict(map(k8s.service, plan.backends))
    parent = parent_ref(gateway)
    return [_route(r, ports, plan.backend_header, parent, retry=channel == "experimental")
            for r in plan.rules]


def render(plan: Plan, *, gateway: str = GATEWAY, channel: str = "standard") -> str:
    return k8s.dump(plan, "gateway-api", documents(plan, gateway=gateway, channel=channel))


def _route(r: Rule, ports: dict[str, int], backend_header: str | None, parent: dict[str, str], *,
           retry: bool = False) -> dict[str, Any]:
    def refs(weights: tuple[tuple[str, int], ...]) -> list[dict[str, Any]]:
        out = []
        for name, weight in weights:
            ref: dict[str, Any] = {"name": name, "port": ports[name], "weight": weight}
            if backend_header:
                ref["filters"] = [{"type": "ResponseHeaderModifier",
                                   "responseHeaderModifier": {"set": [{"name": backend_header, "value": name}]}}]
            out.append(ref)
        return out

    rules: list[dict[str, Any]] = []
    if r.writes_to is not None:
        writes = WRITE_METHODS & r.methods if r.methods else WRITE_METHODS
        rules.append(_rule(r, refs(((r.writes_to, 1),)), methods=writes))
    for _, header, kind, value, to in r.header_routes:
        rules.append(_rule(r, refs(((to, 1),)), headers=[_header(header, kind, value)]))
    ov = r.override
    if ov is not None:
        # the header before the cookie, as the router asks them
        for word, to in (("always", ov.always), ("never", ov.never)):
            if ov.header:
                rules.append(_rule(r, refs(((to, 1),)), headers=[{"name": ov.header, "value": word}]))
        for word, to in (("always", ov.always), ("never", ov.never)):
            if ov.cookie:
                cookie = {"name": "Cookie", "type": "RegularExpression",
                          "value": f"(^|.*; ?){re.escape(ov.cookie)}={word}(;.*|$)"}
                rules.append(_rule(r, refs(((to, 1),)), headers=[cookie]))
    mirror = _mirror(r)
    if mirror is not None and r.mirror_to:
        port = ports[r.mirror_to]
        if isinstance(mirror, str):  # "all"
            rules.append(_rule(r, refs(r.backends), mirror_port=port))
        else:  # a method match outranks the rules without one: the mirrored methods' rule first
            rules += [_rule(r, refs(r.backends), methods=mirror, mirror_port=port), _rule(r, refs(r.backends))]
    else:
        rules.append(_rule(r, refs(r.backends)))
    if retry and r.retries:
        rules = [part for rule in rules for part in _with_retry(r, rule)]
    if len(rules) > MAX_RULES:
        raise ExportError(f"route {r.name!r} needs {len(rules)} HTTPRoute rules, over the Gateway API's "
                          f"{MAX_RULES} — fix: fewer header routes on it, or split the route")
    spec: dict[str, Any] = {"parentRefs": [parent], "rules": rules}
    if r.host:
        spec = {"parentRefs": spec["parentRefs"], "hostnames": [r.host], "rules": rules}
    return {"apiVersion": API_VERSION, "kind": "HTTPRoute",
            "metadata": {"name": k8s.object_name("strangler", r.name),
                         "annotations": {"strangler.dev/route": r.name, "strangler.dev/order": str(r.index)}},
            "spec": spec}


def _rule(r: Rule, backend_refs: list[dict[str, Any]], *, methods: frozenset[str] | None = None,
          headers: list[dict[str, str]] | None = None, mirror_port: int | None = None) -> dict[str, Any]:
    path = {"type": "Exact", "value": r.exact} if r.exact is not None else {"type": "PathPrefix",
                                                                              "value": r.prefix or "/"}
    base: list[dict[str, str]] = []
    if r.header:
        name, value = r.header
        base.append({"name": name, "value": value} if value is not None
                    else {"name": name, "type": "RegularExpression", "value": ".*"})
    base += headers or []
    matches = []
    for method in sorted(methods or r.methods or {""}):
        m: dict[str, Any] = {"path": path}
        if method:
            m["method"] = method
        if base:
            m["headers"] = base
        matches.append(m)
    filters: list[dict[str, Any]] = [{"type": "RequestHeaderModifier",
                                      "requestHeaderModifier": {"remove": [IDENTITY_HEADER]}}]
    if mirror_port is not None and r.mirror_to:
        target: dict[str, Any] = {"backendRef": {"name": r.mirror_to, "port": mirror_port}}
        if r.mirror_percent == int(r.mirror_percent):
            target["percent"] = int(r.mirror_percent)
        else:  # 0.5% is 50 in 10,000
            target["fraction"] = {"numerator": int(round(r.mirror_percent * 100)), "denominator": 10000}
        filters.append({"type": "RequestMirror", "requestMirror": target})
    return {"matches": matches, "filters": filters, "backendRefs": backend_refs,
            "timeouts": {"request": k8s.duration(r.deadline)}}


def _with_retry(r: Rule, rule: dict[str, Any]) -> list[dict[str, Any]]:
    """`rule` split by method: a copy matching the replayable methods with `retry` (connection
    failures only: no codes, as the router retries), then the rest without. Every rule of the
    route is split alike, so a copy with headers still outranks one without (precedence: method,
    then header count), and writes keep going to the owner (the write rule is split on its own)."""
    retry = {"attempts": r.retries}
    if {m.get("method") for m in rule["matches"]} == {None}:
        replayable = r.retry_methods - WRITE_METHODS if r.writes_to is not None else r.retry_methods
        safe = [{**m, "method": method} for m in rule["matches"] for method in sorted(replayable)]
        return ([{**rule, "matches": safe, "retry": retry}] if safe else []) + [rule]
    safe = [m for m in rule["matches"] if m.get("method") in r.retry_methods]
    rest = [m for m in rule["matches"] if m.get("method") not in r.retry_methods]
    return ([{**rule, "matches": safe, "retry": retry}] if safe else []) + ([{**rule, "matches": rest}] if rest else [])


def _mirror(r: Rule) -> frozenset[str] | str | None:
    """How the shadow's methods (GET, HEAD by default: never writes) can be mirrored: "all" when
    they are all the route carries, else the methods for a rule of their own — unless header
    rules exist, which a method match would outrank — else None (not exported)."""
    if not r.mirror_to:
        return None
    methods = r.mirror_methods & r.methods if r.methods else r.mirror_methods
    if r.methods and r.methods <= r.mirror_methods:
        return "all"
    if not methods or r.header_routes or r.override is not None:
        return None
    return methods


def _header(header: str, kind: str, value: str) -> dict[str, str]:
    if kind == "exact":
        return {"name": header, "value": value}
    pattern = re.escape(value) + ".*" if kind == "prefix" else value
    return {"name": header, "type": "RegularExpression", "value": f"^(?:{pattern})$"}
