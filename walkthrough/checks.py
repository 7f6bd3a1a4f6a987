"""The checks of the seven steps, as pure functions of observed state.

Each takes what the walkthrough observed (a map document, the router's counts, spans, a
routes table, ...) plus the parameters the step file gives (migrations/NN-*.yaml) and
returns a `Result`: passed or not, one line saying why, and the figures behind it. They
judge architectural state — who serves a route, who owns a table, which rows differ —
never an HTTP 200 alone. `walkthrough.steps` gathers the state; tests feed them by hand.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Result:
    name: str
    ok: bool
    detail: str
    figures: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail, "figures": dict(self.figures)}


def _r(name: str, ok: bool, detail: str, **figures: Any) -> Result:
    return Result(name, ok, detail, figures)


# -- step 1 -----------------------------------------------------------------------------------

def map_matches_declared(doc: Mapping[str, Any], *, contexts: Mapping[str, Any],
                         shared_writes: Sequence[str] = (), tangles: Sequence[str] = (), **_: Any) -> Result:
    """Every declared context's apps and tables are one context of the map, no other context
    holds its tables, the map found the tangles the step names (by TANGLES.md id), and — when
    it observed run-time writes — the shared writes."""
    found = doc.get("contexts") or {}
    problems: list[str] = []
    for name, want in contexts.items():
        apps, tables = set(want.get("apps") or ()), set(want.get("tables") or ())
        home = [c for c, v in found.items() if apps & set(v.get("apps") or ())]
        if not home:
            problems.append(f"no context of the map holds the app(s) {sorted(apps)} of {name}")
            continue
        have = set().union(*(set(found[c].get("tables") or ()) for c in home))
        if tables - have:
            problems.append(f"{name}: table(s) {sorted(tables - have)} are not in the map's context {home[0]}")
        for other, v in found.items():
            if other not in home and tables & set(v.get("tables") or ()):
                problems.append(f"{name}: table(s) {sorted(tables & set(v['tables']))} also in context {other}")
    found_ids = {t.get("id") for t in doc.get("tangles") or [] if t.get("id")}
    if set(tangles) - found_ids:
        problems.append(f"the map did not find tangle(s) {sorted(set(tangles) - found_ids)}")
    seen = {w.get("table"): w.get("writers") for w in doc.get("shared_writes") or []}
    # shared writes are seen at run time only: judged when the map watched some request write
    observed = bool(doc.get("shared_writes")) or any(
        e.get("writes") and str(e.get("endpoint", "")).split(" ")[0] in ("POST", "PUT", "PATCH", "DELETE")
        for e in doc.get("endpoints") or [])
    missing = [t for t in shared_writes if t not in seen]
    if missing and observed:
        problems.append(f"the map found no second writer of {missing} (tangles T4a/T4b say there are)")
    ok = not problems
    found_writes = ", ".join(f"{t} by {'+'.join(seen[t] or [])}" for t in shared_writes if t in seen)
    detail = ("declared contexts match the map" + (f"; tangles found: {', '.join(sorted(tangles))}" if tangles else "")
              + (f"; shared writes: {found_writes}" if found_writes else
                 "; no run-time writes observed: shared writes not checked" if shared_writes and missing else "")
              if ok else "; ".join(problems))
    return _r("map_matches_declared", ok, detail, contexts=len(found), tangles=len(doc.get("tangles") or []))


# -- step 2 -----------------------------------------------------------------------------------

def golden_path_identical(pairs: Sequence[tuple[str, tuple[int, Any], tuple[int, Any]]], **_: Any) -> Result:
    """(path, (status, body) direct, (status, body) through the router): all equal."""
    differ = [path for path, direct, routed in pairs if direct != routed]
    ok = bool(pairs) and not differ
    detail = (f"{len(pairs)} golden-path answers identical through the router" if ok else
              f"differ through the router: {', '.join(differ)}" if differ else "no request compared")
    return _r("golden_path_identical", ok, detail, compared=len(pairs), differing=len(differ))


def latency_within_budget(direct_ms: Sequence[float], routed_ms: Sequence[float], *,
                          max_added_ms: float, **_: Any) -> Result:
    """The router's added latency (median through it minus median direct) within the budget."""
    if not direct_ms or not routed_ms:
        return _r("latency_within_budget", False, "no latency measured")
    added = statistics.median(routed_ms) - statistics.median(direct_ms)
    ok = added <= max_added_ms
    return _r("latency_within_budget", ok,
              f"the router adds {added:.1f} ms at the median ({'within' if ok else 'over'} {max_added_ms:g} ms)",
              added_ms=round(added, 2), direct_p50_ms=round(statistics.median(direct_ms), 2),
              routed_p50_ms=round(statistics.median(routed_ms), 2))


# -- step 3 and 4 -----------------------------------------------------------------------------

def cdc_caught_up(metrics: Mapping[str, Any], *, stream: str, max_lag_ms: float, **_: Any) -> Result:
    """The stream's metrics file: streaming, snapshot done, lag under the budget."""
    state, lag = metrics.get("state"), float(metrics.get("lag_ms") or 0)
    ok = state == "streaming" and lag <= max_lag_ms
    return _r("cdc_caught_up", ok, f"{stream}: {state or 'not running'}, lag {lag:.0f} ms "
              f"({'within' if ok else 'budget'} {max_lag_ms:g} ms)", stream=stream, lag_ms=round(lag, 1),
              events=metrics.get("events", 0))


def contract_tests_live(failures: Sequence[str], compared: int, **_: Any) -> Result:
    ok = compared > 0 and not failures
    detail = (f"{compared} contract requests answered as the monolith does" if ok else
              f"{len(failures)} of {compared} contract requests differ: {failures[0][:300]}" if failures
              else "no contract request was compared")
    return _r("contract_tests_live", ok, detail, compared=compared, failed=len(failures))


def shadow_within_noise(shadow: Mapping[str, Any], in_flight: int = 0, *, min_compared: int,
                        max_net_diff_rate: float, **_: Any) -> Result:
    """The router's shadow record, less `in_flight`: differing reads that agreed when asked
    again once the stream had caught up (a change the copy had not applied yet, within the
    CDC lag — `verify` rechecks its rows in flight the same way)."""
    compared = int(shadow.get("compared") or 0)
    net = float(shadow.get("net_diff_rate") or 0.0)
    if in_flight:
        net = max(0, int(shadow.get("differing") or 0) - in_flight) / compared if compared else 0.0
    ok = compared >= min_compared and net <= max_net_diff_rate
    return _r("shadow_within_noise", ok, f"{compared} shadowed reads compared, diff rate net of noise "
              f"{100 * net:.1f}% (need ≥{min_compared} compared, ≤{100 * max_net_diff_rate:g}%)"
              + (f"; {in_flight} differing read(s) agreed once the stream caught up (in flight)" if in_flight else ""),
              compared=compared, net_diff_rate=net, diff_rate=shadow.get("diff_rate"), in_flight=in_flight)


def write_owner(ownership: Mapping[str, Any], served_by: str | None, *, group: str, owner: str,
                **_: Any) -> Result:
    """ownership.yaml names the owner, and a write through the router was served by it."""
    declared = ((ownership.get("groups") or {}).get(group) or {}).get("owner")
    ok = declared == owner and served_by == owner
    return _r("write_owner", ok, f"group {group}: ownership.yaml says {declared}, a write through the router "
              f"was served by {served_by}", declared=declared, served_by=served_by)


def parity_both_ways(differing: Mapping[str, int | None], *, streams: Sequence[str], **_: Any) -> Result:
    """`strangler verify` of each stream: zero differing rows in every direction."""
    counts = {s: differing.get(s) for s in streams}
    ok = all(n == 0 for n in counts.values())
    return _r("parity_both_ways", ok, ", ".join(f"{s}: {'not verified' if n is None else n} rows differ"
                                                for s, n in counts.items()), differing=counts)


# -- step 5 -----------------------------------------------------------------------------------

def trace_crosses(spans: Iterable[Mapping[str, Any]], *, services: Sequence[str], **_: Any) -> Result:
    """Some trace holds spans of every service, each later service's span a child of a span
    of the one before it (Zipkin v2 JSON: traceId, id, parentId, localEndpoint.serviceName)."""
    traces: dict[str, list[Mapping[str, Any]]] = {}
    for span in spans:
        traces.setdefault(str(span.get("traceId")), []).append(span)

    def service(span: Mapping[str, Any]) -> str:
        return str((span.get("localEndpoint") or {}).get("serviceName"))

    for trace_id, members in traces.items():
        ids = {s.get("id"): s for s in members}
        chained = True
        for before, after in zip(services, services[1:], strict=False):
            children = [s for s in members if service(s) == after]
            if not any(service(ids.get(c.get("parentId"), {})) == before for c in children):
                chained = False
        if chained and all(any(service(s) == name for s in members) for name in services):
            return _r("trace_crosses", True, f"trace {trace_id} crosses {' → '.join(services)} "
                      f"({len(members)} spans)", trace_id=trace_id, spans=len(members))
    names = sorted({service(s) for ms in traces.values() for s in ms})
    return _r("trace_crosses", False, f"no trace crosses {' → '.join(services)} ({len(traces)} traces "
              f"seen, services {names or 'none'})", traces=len(traces))


def metrics_per_backend(counts: Mapping[str, int], *, route: str, backends: Sequence[str], **_: Any) -> Result:
    missing = [b for b in backends if b not in counts]
    ok = not missing
    return _r("metrics_per_backend", ok, f"route {route}: requests per backend {dict(counts)}"
              + (f"; no series for {missing}" if missing else ""), counts=dict(counts))


# -- step 6 -----------------------------------------------------------------------------------

def canary_rolled_back(result: Mapping[str, Any] | None, weights_after: Mapping[str, int], *, route: str,
                       fail_rate: float, candidate: str = "catalog", **_: Any) -> Result:
    """With the candidate failing on purpose the canary rolled back by itself: outcome, and
    the route's live weights back at zero for the candidate."""
    outcome = (result or {}).get("outcome")
    ok = outcome == "rolled_back" and int(weights_after.get(candidate, 0)) == 0
    return _r("canary_rolled_back", ok, f"{route} with the catalog failing {100 * fail_rate:g}%: {outcome}, "
              f"weights now {dict(weights_after)}", outcome=outcome, why=(result or {}).get("why"))


def canary_promoted(result: Mapping[str, Any] | None, weights_after: Mapping[str, int], *, route: str,
                    candidate: str, **_: Any) -> Result:
    outcome = (result or {}).get("outcome")
    others = {b: w for b, w in weights_after.items() if b != candidate}
    ok = outcome == "promoted" and int(weights_after.get(candidate, 0)) == 100 and not any(others.values())
    return _r("canary_promoted", ok, f"{route}: {outcome}, weights now {dict(weights_after)}",
              outcome=outcome, steps=len((result or {}).get("steps") or []))


def observed_split(deltas: Sequence[Mapping[str, int]], *, route: str, backend: str, min_share: float,
                   **_: Any) -> Result:
    """The share of requests the router counted for `backend` over the last samples."""
    total = sum(sum(d.values()) for d in deltas)
    share = sum(d.get(backend, 0) for d in deltas) / total if total else 0.0
    ok = total > 0 and share >= min_share
    return _r("observed_split", ok, f"{route}: {100 * share:.1f}% of {total} requests observed on {backend} "
              f"(need ≥{100 * min_share:g}%)", share=round(share, 4), requests=total)


# -- step 7 -----------------------------------------------------------------------------------

def zero_traffic_window(deltas: Sequence[Mapping[str, int]], observed: float, *, route: str, backend: str,
                        seconds: float, **_: Any) -> Result:
    """Over a window of at least `seconds` (`observed` long) with traffic on the route,
    `backend` got no request."""
    total = sum(sum(d.values()) for d in deltas)
    hits = sum(d.get(backend, 0) for d in deltas)
    ok = total > 0 and hits == 0 and observed >= seconds
    detail = (f"{route}: {hits} of {total} requests reached {backend} in {observed:.1f}s"
              + ("" if total else " (no traffic: a quiet window proves nothing)")
              + ("" if observed >= seconds else f" (the window must last {seconds:g}s)"))
    return _r("zero_traffic_window", ok, detail, hits=hits, requests=total, seconds=round(observed, 1))


def monolith_writes_retired(observed: int | None, *, path: str, method: str, status: int, **_: Any) -> Result:
    ok = observed == status
    return _r("monolith_writes_retired", ok, f"{method} {path} on the monolith answers {observed} "
              f"(retired means {status})", status=observed)


def import_contract(returncode: int, output: str, *, config: str, **_: Any) -> Result:
    kept = returncode == 0
    lines = [ln.strip() for ln in output.splitlines() if "KEPT" in ln or "BROKEN" in ln or "->" in ln]
    return _r("import_contract", kept, f"lint-imports {config}: " + ("; ".join(lines[:4]) or f"exit {returncode}"),
              returncode=returncode)


def route_cleaned(routes: Mapping[str, Any], *, route: str, retired: str, **_: Any) -> Result:
    """The route names the retired backend nowhere: backends, fallback, shadow."""
    entry = next((r for r in routes.get("routes") or [] if r.get("name") == route), None)
    if entry is None:
        return _r("route_cleaned", False, f"no route {route!r} in the routing table")
    backends = entry.get("backends") or entry.get("weights") or {}  # the file's or the live table's
    left = []
    if retired in backends:
        left.append("backends")
    if entry.get("fallback") == retired:
        left.append("fallback")
    if (entry.get("shadow") or {}).get("to") == retired or entry.get("shadow"):
        left.append("shadow")
    ok = not left
    return _r("route_cleaned", ok, f"{route}: " + ("names only " + ", ".join(backends)
                                                  if ok else f"{retired} still in {', '.join(left)}"))
