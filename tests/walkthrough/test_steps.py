"""walkthrough/steps.py pieces that need no running stack: the probe's cohorts, the map source,
the contract loader, the span receiver."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import httpx
import pytest

from migrations import load_steps
from router.balance import choose
from walkthrough import checks, steps
from walkthrough.spans import SpanReceiver

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("first", [1, 10, 25, 50])
def test_half_the_probe_cohorts_land_on_the_candidate_at_the_first_step(first: int) -> None:
    """The canary's request minimum must not depend on luck (issue 19: a 10% step saw 0
    candidate requests in one run of nine): the probe picks its cohorts with the router's hash."""
    probe = steps.Probe("http://127.0.0.1:9", salt="products", first_weight=first, rate=1.0)
    served = [choose((("monolith", 100 - first), ("catalog", first)), salt="products", key=k) for k in probe.keys]
    assert served.count("catalog") == len(probe.keys) // 2
    again = steps.Probe("http://127.0.0.1:9", salt="products", first_weight=first, rate=1.0)
    assert again.keys == probe.keys  # the same cohorts every run


def test_step_1_uses_contextmap_build_map_when_present(monkeypatch: pytest.MonkeyPatch) -> None:
    """helper "map"'s contract: contextmap.build_map(settings_module) -> the `strangler map --json` document."""
    doc = {"project": "stub", "contexts": {"catalog": {"apps": ["catalog"], "tables": [
        "catalog_category", "catalog_product", "catalog_pricehistory"]}},
        "shared_writes": [{"table": "catalog_product", "writers": ["catalog", "orders"]}],
        "endpoints": [{"endpoint": "POST /api/orders/", "writes": ["orders_order", "catalog_product"]}],
        "tangles": [{"id": t, "kind": "k", "where": "w", "detail": "d"} for t in ("T2", "T3", "T8", "T15")]}
    stub = types.ModuleType("contextmap")
    asked: list[str] = []
    stub.build_map = lambda settings_module, **_: asked.append(settings_module) or doc  # type: ignore[attr-defined]
    # (the stub takes any keyword: build_map is asked with exercise=True when it knows it)
    monkeypatch.setitem(sys.modules, "contextmap", stub)
    assert steps.build_map("monolith.settings") == doc and asked == ["monolith.settings"]
    step = load_steps()[0]
    result = checks.map_matches_declared(doc, **step.checks[0].params)
    assert result.ok, result.detail
    doc["shared_writes"] = []
    assert not checks.map_matches_declared(doc, **step.checks[0].params).ok
    doc["tangles"] = doc["tangles"][1:]
    assert "did not find tangle(s) ['T2']" in checks.map_matches_declared(doc, **step.checks[0].params).detail


def test_without_contextmap_the_contexts_come_from_djangos_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "contextmap", None)  # import fails
    doc = steps.build_map("monolith.settings")
    assert "contextmap missing" in doc["source"]
    assert {"catalog_product", "catalog_category", "catalog_pricehistory"} <= set(doc["contexts"]["catalog"]["tables"])


def test_the_contract_loads_without_hypothesis(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "hypothesis", None)  # `make demo` installs no test tools
    contract = steps.load_contract(REPO / "tests/extracted/catalog/contract.py")
    assert len(contract.FIXED_REQUESTS) > 20 and callable(contract.compare)


def test_the_span_receiver_keeps_what_is_posted() -> None:
    receiver = SpanReceiver().start()
    try:
        spans = [{"traceId": "t", "id": "a", "localEndpoint": {"serviceName": "strangler-router"}}]
        answer = httpx.post(receiver.endpoint, content=json.dumps(spans), headers={"Content-Type": "application/json"})
        assert answer.status_code == 202 and receiver.snapshot() == spans
        assert httpx.post(receiver.endpoint, content=b"{nope").status_code == 400
    finally:
        receiver.stop()
