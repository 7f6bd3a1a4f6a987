"""Plan → an Istio `VirtualService` and a `DestinationRule` per upstream (networking.istio.io/v1).

Place in the flow: `strangler export istio`. Envoy tries `http` entries in the order written,
so they follow the router's matching order and, inside a route, its decision order: writes,
header routes, the override's always/never, then the weights. Retries are set only on an
entry matching the route's replayable methods; every other entry says `attempts: 0`, since
Istio's default would retry any method. Each upstream is a Service named like it.
"""

from __future__ import annotations

import re
from copy import deepcopy
from typing import Any

from dataplane import k8s
from dataplane.model import IDENTITY_HEADER, WRITE_METHODS, Backend, Plan, Rule, shared_limits
from router.match import prefix_forms

API_VERSION = "networking.istio.io/v1"
GATEWAY = "strangler"  # the Istio Gateway the VirtualService binds to
RETRY_ON = "connect-failure,refused-stream,reset"  # attempts no backend answered, as the router retries

FEATURES: tuple[tuple[str, str, str], ...] = (
    ("routes in the router's matching order", "yes", "http entries in the order written, first match wins"),
    ("weights and sticky cohorts (same users)", "partly", "route weights, chosen per request; consistentHash keeps a user on one pod, not on one upstream"),
    ("overrides (header/cookie always/never)", "yes", "header matches; the cookie as a regex on the cookie header"),
    ("anonymous cohort cookie", "no", "no cohorts to keep"),
    ("writes to the ownership group's owner", "yes", "a method match (a static owner: export again after a flip)"),
    ("fallback on failure (replayable methods)", "no", "no failover between route destinations"),
    ("retries on replayable methods only", "yes", "retries on an entry matching those methods; attempts: 0 on the others"),
    ("timeouts", "partly", "connectTimeout per upstream; the route's deadline as timeout"),
    ("deadline over every attempt", "yes", "timeout"),
    ("mirroring (shadow copy)", "yes", "mirror + mirrorPercentage on entries for the shadow's methods only"),
    ("shadow diffing", "no", "nothing compares two answers"),
    ("identity bridge (signed X-Strangler-Identity)", "no", "needs the router's key and a call to the monolith"),
    ("identity header stripped from clients", "yes", "headers.request.remove"),
    ("breakers", "partly", "outlierDetection ejects a pod after consecutive 5xx"),
    ("active health checks", "no", "the Service's readiness probes instead"),
    ("rate limits", "no", "needs an EnvoyFilter; not exported"),
    ("header routes (a rollout's setHeaderRoute)", "yes", "header matches: exact, prefix, regex (RE2)"),
    ("held writes during an ownership flip (503)", "no", "a live operation: nginx/HAProxy under `strangler up --data-plane` hold writes; here, export again after the flip"),
    ("path canonicalisation and smuggling refusal", "partly", "Envoy's own path normalisation"),
)


def limits(plan: Plan, *, gateway: str = GATEWAY) -> list[str]:
    """What this plan asks for that Istio will not do, route by route."""
    out = [f"upstreams become Service refs named like the upstream, port from the URL "
           f"({', '.join(f'{n}:{p}' for n, p in map(k8s.service, plan.backends))}); "
           f"the VirtualService binds to the Gateway {gateway!r} for hosts '*'"]
    for r in plan.rules:
        if len(r.percent_slices) > 1:
            out.append(f"route {r.name}: weights are per request in Envoy (the DestinationRule's "
                       "consistentHash only picks the pod) — sticky cohorts: no (same users as the router: no)")
        out += shared_limits(r, target="Envoy", regexes="RE2", fallback=True)
        if r.mirror_to:
            out.append(f"route {r.name}: mirrored to {r.mirror_to} ({', '.join(sorted(r.mirror_methods))}), "
                       "responses not diffed")
    return out


def documents(plan: Plan, *, gateway: str = GATEWAY) -> list[dict[str, Any]]:
    """`gateway`: the Istio Gateway the VirtualService binds to, `NAME` or `NAMESPACE/NAME`."""
    k8s.gateway_name(gateway)
    ports = dict(map(k8s.service, plan.backends))
    http = [entry for r in plan.rules for entry in _entries(r, ports, plan.backend_header)]
    vs = {"apiVersion": API_VERSION, "kind": "VirtualService", "metadata": {"name": "strangler"},
          "spec": {"hosts": ["*"], "gateways": [gateway], "http": http}}
    return [vs, *(_destination_rule(b, plan) for b in plan.backends)]


def render(plan: Plan, *, gateway: str = GATEWAY) -> str:
    return k8s.dump(plan, "istio", documents(plan, gateway=gateway))


def _entries(r: Rule, ports: dict[str, int], backend_header: str | None) -> list[dict[str, Any]]:
    def route(weights: tuple[tuple[str, int], ...]) -> list[dict[str, Any]]:
        out = []
        for name, weight in weights:
            dest: dict[str, Any] = {"destination": {"host": name, "port": {"number": ports[name]}},
                                    "weight": weight}
            if backend_header:
                dest["headers"] = {"response": {"set": {backend_header: name}}}
            out.append(dest)
        return out

    out: list[dict[str, Any]] = []
    if r.writes_to is not None:
        writes = WRITE_METHODS & r.methods if r.methods else WRITE_METHODS
        out.append(_entry(r, "writes", route(((r.writes_to, 100),)), methods=writes, retry=False))
    for name, header, kind, value, to in r.header_routes:
        out += _retry_split(r, f"header-{name}", route(((to, 100),)), {header: {kind: value}})
    ov = r.override
    if ov is not None:
        for word, to in (("always", ov.always), ("never", ov.never)):  # the header before the cookie
            if ov.header:
                out += _retry_split(r, f"override-{word}", route(((to, 100),)), {ov.header: {"exact": word}})
        for word, to in (("always", ov.always), ("never", ov.never)):
            if ov.cookie:
                cookie = {"regex": f"(^|.*; ?){re.escape(ov.cookie)}={word}(;.*|$)"}
                out += _retry_split(r, f"override-cookie-{word}", route(((to, 100),)), {"cookie": cookie})
    weighted = _retry_split(r, "weights", route(r.backends), {})
    if r.mirror_to:  # only the shadow's methods (never writes): mirrored copies of the entries first
        mirrored: list[dict[str, Any]] = []
        covered: frozenset[str] = frozenset()
        for entry in weighted:
            methods = _methods(entry)
            carried = (r.mirror_methods & methods if methods else r.mirror_methods) - covered
            covered |= carried
            if carried:
                copy = deepcopy(entry)
                copy["name"] = f"{entry['name']}-mirrored"
                for m in copy["match"]:
                    m["method"] = {"regex": "|".join(sorted(carried))}
                copy["mirror"] = {"host": r.mirror_to, "port": {"number": ports[r.mirror_to]}}
                copy["mirrorPercentage"] = {"value": r.mirror_percent}
                mirrored.append(copy)
        weighted = mirrored + weighted
    return out + weighted


def _methods(entry: dict[str, Any]) -> frozenset[str] | None:
    regex = entry["match"][0].get("method", {}).get("regex")
    return frozenset(regex.split("|")) if regex else None


def _retry_split(r: Rule, what: str, route: list[dict[str, Any]], headers: dict[str, Any]) -> list[dict[str, Any]]:
    """The entry with retries for the replayable methods, then the same without them."""
    methods = r.methods
    if not r.retries:
        return [_entry(r, what, route, methods=methods, headers=headers, retry=False)]
    safe = r.retry_methods & methods if methods else r.retry_methods
    return [_entry(r, f"{what}-replayable", route, methods=safe, headers=headers, retry=True),
            _entry(r, what, route, methods=methods, headers=headers, retry=False)]


def _entry(r: Rule, what: str, route: list[dict[str, Any]], *, methods: frozenset[str] | None,
           retry: bool, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    all_headers = dict(headers or {})
    if r.header:
        name, value = r.header
        all_headers[name] = {"exact": value} if value is not None else {"regex": ".*"}
    if r.exact is not None:
        uris = [{"exact": r.exact}]
    else:  # Istio's prefix is a string prefix: /api/products would take /api/productsX too
        whole, with_slash = prefix_forms(r.prefix or "/")
        uris = [{"prefix": with_slash}] if whole == with_slash else [{"exact": whole}, {"prefix": with_slash}]
    matches = []
    for uri in uris:
        m: dict[str, Any] = {"uri": uri}
        if methods:
            m["method"] = {"regex": "|".join(sorted(methods))}
        if r.host:
            m["authority"] = {"regex": f"{re.escape(r.host)}(:[0-9]+)?"}  # the router ignores the port
        if all_headers:
            m["headers"] = all_headers
        matches.append(m)
    return {"name": k8s.object_name(r.name, what), "match": matches, "route": route,
            "timeout": k8s.duration(r.deadline),
            "retries": {"attempts": r.retries, "retryOn": RETRY_ON} if retry else {"attempts": 0},
            "headers": {"request": {"remove": [IDENTITY_HEADER]}}}


def _destination_rule(b: Backend, plan: Plan) -> dict[str, Any]:
    policy: dict[str, Any] = {"connectionPool": {"tcp": {"connectTimeout": k8s.duration(b.connect_timeout)}},
                              "outlierDetection": {"consecutive5xxErrors": b.failures,
                                                   "baseEjectionTime": k8s.duration(b.open_for)}}
    key = next((r.key for r in plan.rules if any(n == b.name for n, _ in r.backends)
                and (r.key.header or r.key.cookie)), None)
    if key is not None:
        policy["loadBalancer"] = {"consistentHash": {"httpHeaderName": key.header} if key.header
                                  else {"httpCookie": {"name": key.cookie, "path": "/"}}}
    return {"apiVersion": API_VERSION, "kind": "DestinationRule",
            "metadata": {"name": k8s.object_name("strangler", b.name)},
            "spec": {"host": b.name, "trafficPolicy": policy}}
