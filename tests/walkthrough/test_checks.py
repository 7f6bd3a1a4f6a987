"""walkthrough/checks.py: each check fails on a wrong state and passes on the right one.

States are written by hand here (a map document, router counts, spans, a routes table),
so these run in milliseconds; the slow end-to-end run is tests/cli/test_demo.py.
"""

from __future__ import annotations

from typing import Any

from walkthrough import checks

CATALOG = {"apps": ["catalog"], "tables": ["catalog_category", "catalog_product"]}


def map_doc(**change: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "project": "monolith",
        "contexts": {"catalog": {"apps": ["catalog"], "tables": ["catalog_category", "catalog_product"]},
                     "orders": {"apps": ["orders"], "tables": ["orders_order"]}},
        "imports": [], "foreign_keys": [], "coupling": [], "cross_context_transactions": [], "signals": [],
        "shared_writes": [{"table": "catalog_product", "writers": ["catalog", "inventory", "orders"]}],
        "tangles": [{"id": "T4a", "kind": "shared_write", "where": "catalog_product", "detail": ""}]}
    doc.update(change)
    return doc


def test_map_matches_declared_contexts_and_finds_the_shared_write() -> None:
    ok = checks.map_matches_declared(map_doc(), contexts={"catalog": CATALOG}, shared_writes=["catalog_product"])
    assert ok.ok and "catalog_product by catalog+inventory+orders" in ok.detail
    moved = map_doc(contexts={"catalog": {"apps": ["catalog"], "tables": ["catalog_category"]},
                              "orders": {"apps": ["orders"], "tables": ["orders_order", "catalog_product"]}})
    bad = checks.map_matches_declared(moved, contexts={"catalog": CATALOG})
    assert not bad.ok and "['catalog_product'] are not in the map's context catalog" in bad.detail
    assert "also in context orders" in bad.detail
    # it watched requests and still saw one writer of catalog_product: the map is wrong
    blind = checks.map_matches_declared(map_doc(shared_writes=[], endpoints=[{"endpoint": "POST /api/orders/", "writes": ["orders_order"]}]),
                                        contexts={"catalog": CATALOG}, shared_writes=["catalog_product"])
    assert not blind.ok and "no second writer" in blind.detail
    # static only (nothing observed): the shared writes are not judged, and it says so
    static = checks.map_matches_declared(map_doc(shared_writes=[]), contexts={"catalog": CATALOG},
                                         shared_writes=["catalog_product"])
    assert static.ok and "shared writes not checked" in static.detail
    assert checks.map_matches_declared(map_doc(), contexts={"catalog": CATALOG}, tangles=["T4a"]).ok
    missed = checks.map_matches_declared(map_doc(), contexts={"catalog": CATALOG}, tangles=["T4a", "T8"])
    assert not missed.ok and "did not find tangle(s) ['T8']" in missed.detail
    assert not checks.map_matches_declared(map_doc(contexts={}), contexts={"catalog": CATALOG}).ok


def test_golden_path_and_latency() -> None:
    same = [("/api/products/", (200, {"count": 3}), (200, {"count": 3}))]
    assert checks.golden_path_identical(same).ok
    assert not checks.golden_path_identical(same + [("/x", (200, {"a": 1}), (502, "bad gateway"))]).ok
    assert not checks.golden_path_identical([]).ok
    assert checks.latency_within_budget([2.0, 3.0, 4.0], [3.0, 4.0, 5.0], max_added_ms=2).ok
    slow = checks.latency_within_budget([2.0, 3.0, 4.0], [30.0, 40.0, 50.0], max_added_ms=2)
    assert not slow.ok and slow.figures["added_ms"] == 37.0


def test_cdc_contract_shadow() -> None:
    assert checks.cdc_caught_up({"state": "streaming", "lag_ms": 40}, stream="catalog", max_lag_ms=2000).ok
    assert not checks.cdc_caught_up({"state": "snapshot", "lag_ms": 0}, stream="catalog", max_lag_ms=2000).ok
    assert not checks.cdc_caught_up({"state": "streaming", "lag_ms": 9000}, stream="catalog", max_lag_ms=2000).ok
    assert not checks.cdc_caught_up({}, stream="catalog", max_lag_ms=2000).ok
    assert checks.contract_tests_live([], 68).ok
    assert not checks.contract_tests_live(["/api/products/: count differs"], 68).ok
    assert not checks.contract_tests_live([], 0).ok
    params = {"min_compared": 5, "max_net_diff_rate": 0.0}
    assert checks.shadow_within_noise({"compared": 40, "net_diff_rate": 0.0}, **params).ok
    assert not checks.shadow_within_noise({"compared": 40, "net_diff_rate": 0.05}, **params).ok
    assert not checks.shadow_within_noise({"compared": 2, "net_diff_rate": 0.0}, **params).ok
    # a differing read that agreed once the stream caught up was in flight, not drift
    one_off = {"compared": 40, "differing": 1, "net_diff_rate": 0.025}
    assert checks.shadow_within_noise(one_off, 1, **params).ok
    assert "1 differing read(s) agreed" in checks.shadow_within_noise(one_off, 1, **params).detail
    assert not checks.shadow_within_noise({**one_off, "differing": 2, "net_diff_rate": 0.05}, 1, **params).ok


def test_write_owner_and_parity() -> None:
    owned = {"groups": {"catalog": {"owner": "catalog"}}}
    assert checks.write_owner(owned, "catalog", group="catalog", owner="catalog").ok
    # the file flipped but the router still sent the write to the monolith: not moved
    assert not checks.write_owner(owned, "monolith", group="catalog", owner="catalog").ok
    assert not checks.write_owner({"groups": {"catalog": {"owner": "monolith"}}}, "catalog",
                                  group="catalog", owner="catalog").ok
    both = ["catalog", "catalog_reverse"]
    assert checks.parity_both_ways({"catalog": 0, "catalog_reverse": 0}, streams=both).ok
    assert not checks.parity_both_ways({"catalog": 0, "catalog_reverse": 2}, streams=both).ok
    assert not checks.parity_both_ways({"catalog": 0}, streams=both).ok  # one direction never verified


def span(trace: str, sid: str, service: str, parent: str | None = None) -> dict[str, Any]:
    return {"traceId": trace, "id": sid, "parentId": parent, "localEndpoint": {"serviceName": service}}


def test_trace_crosses_router_to_service() -> None:
    services = ["strangler-router", "catalog"]
    whole = [span("t1", "a", "strangler-router"), span("t1", "b", "catalog", parent="a"),
             span("t1", "c", "catalog", parent="b")]
    assert checks.trace_crosses(whole, services=services).ok
    # the same two services, but in two traces (the traceparent was not passed on)
    split = [span("t1", "a", "strangler-router"), span("t2", "b", "catalog")]
    assert not checks.trace_crosses(split, services=services).ok
    # one trace, but the catalog's span does not hang under the router's
    orphan = [span("t1", "a", "strangler-router"), span("t1", "b", "catalog", parent="zz")]
    assert not checks.trace_crosses(orphan, services=services).ok
    assert not checks.trace_crosses([span("t1", "a", "strangler-router")], services=services).ok
    assert checks.metrics_per_backend({"monolith": 5, "catalog": 0}, route="p", backends=["monolith", "catalog"]).ok
    assert not checks.metrics_per_backend({"monolith": 5}, route="p", backends=["monolith", "catalog"]).ok


def test_canaries_and_the_observed_split() -> None:
    back = {"outcome": "rolled_back", "why": "error rate 50% > 1%"}
    assert checks.canary_rolled_back(back, {"monolith": 100, "catalog": 0}, route="p", fail_rate=0.5).ok
    assert not checks.canary_rolled_back({"outcome": "promoted"}, {"catalog": 100}, route="p", fail_rate=0.5).ok
    # said rolled back, but the live table still sends users to the failing candidate
    assert not checks.canary_rolled_back(back, {"monolith": 50, "catalog": 50}, route="p", fail_rate=0.5).ok
    done = {"outcome": "promoted", "steps": [{}, {}]}
    assert checks.canary_promoted(done, {"monolith": 0, "catalog": 100}, route="p", candidate="catalog").ok
    assert not checks.canary_promoted(done, {"monolith": 50, "catalog": 50}, route="p", candidate="catalog").ok
    assert not checks.canary_promoted(back, {"monolith": 100, "catalog": 0}, route="p", candidate="catalog").ok
    assert checks.observed_split([{"catalog": 30}, {"catalog": 20, "monolith": 0}], route="p", backend="catalog",
                                 min_share=0.99).ok
    assert not checks.observed_split([{"catalog": 30, "monolith": 3}], route="p", backend="catalog",
                                     min_share=0.99).ok
    assert not checks.observed_split([], route="p", backend="catalog", min_share=0.99).ok


def test_deprecation_checks() -> None:
    window = {"route": "p", "backend": "monolith", "seconds": 4}
    assert checks.zero_traffic_window([{"catalog": 20, "monolith": 0}] * 4, 4.2, **window).ok
    hit = checks.zero_traffic_window([{"catalog": 20}, {"catalog": 19, "monolith": 1}], 4.2, **window)
    assert not hit.ok and hit.figures["hits"] == 1
    assert not checks.zero_traffic_window([], 4.2, **window).ok  # a quiet window proves nothing
    assert not checks.zero_traffic_window([{"catalog": 20}], 1.0, **window).ok  # too short
    retired = {"path": "/api/products/1/", "method": "PATCH", "status": 410}
    assert checks.monolith_writes_retired(410, **retired).ok
    assert not checks.monolith_writes_retired(403, **retired).ok
    assert not checks.monolith_writes_retired(None, **retired).ok
    assert checks.import_contract(0, "x KEPT\nContracts: 1 kept, 0 broken.", config="c.ini").ok
    assert not checks.import_contract(1, "x BROKEN\nmonolith.shop.pages -> monolith.catalog.views", config="c").ok
    live = {"routes": [{"name": "products", "weights": {"catalog": 100}, "fallback": None, "shadow": None}]}
    assert checks.route_cleaned(live, route="products", retired="monolith").ok
    for left in ({"weights": {"monolith": 0, "catalog": 100}}, {"fallback": "monolith"},
                 {"shadow": {"to": "catalog", "percent": 0}}):
        table = {"routes": [{**live["routes"][0], **left}]}
        assert not checks.route_cleaned(table, route="products", retired="monolith").ok, left
    assert not checks.route_cleaned({"routes": []}, route="products", retired="monolith").ok
