"""`strangler map` on the shop: the tangles of monolith/TANGLES.md, found by the tool.

One run of traffic (tests/contextmap/drive_monolith.py, its own process, the recorder
middleware installed) and one map of it, shared by every test here.
"""

from __future__ import annotations

import re
import subprocess
import sys
from typing import Any

import pytest

import contextmap
from tests.contextmap.conftest import ROOT

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def shop_map(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    observe = tmp_path_factory.mktemp("map") / "observe.jsonl"
    proc = subprocess.run([sys.executable, "-m", "tests.contextmap.drive_monolith", str(observe)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return contextmap.build_map("monolith.settings", observe=observe, cwd=ROOT)


def test_the_document_keeps_the_contract(shop_map: dict[str, Any]) -> None:
    for key in ("project", "contexts", "imports", "foreign_keys", "coupling", "shared_writes",
                "cross_context_transactions", "signals", "tangles"):
        assert key in shop_map
    assert shop_map["project"] == "monolith"
    assert shop_map["contexts"]["catalog"] == {"apps": ["catalog"], "external": False,
                                               "tables": ["catalog_category", "catalog_pricehistory",
                                                          "catalog_product"]}
    assert all(set(e) >= {"from", "to", "count"} for e in shop_map["imports"])
    assert all(set(c) >= {"a", "b", "score"} for c in shop_map["coupling"])
    assert all(set(t) >= {"id", "kind", "where", "detail"} for t in shop_map["tangles"])


def test_cross_context_foreign_keys_string_and_class_references(shop_map: dict[str, Any]) -> None:
    fks = {(f["from_table"], f["to_table"]): f for f in shop_map["foreign_keys"]}
    # T1: a string reference Django resolved; T2: a class import; T9: onto auth_user
    assert fks[("inventory_reservation", "orders_order")]["where"] == "monolith/inventory/models.py:42"
    assert fks[("orders_orderline", "catalog_product")]["where"] == "monolith/orders/models.py:57"
    assert fks[("orders_order", "auth_user")]["from_app"] == "orders"
    for pair in [("payments_paymentattempt", "orders_order"), ("shipping_shipment", "orders_order"),
                 ("shipping_shipment", "customers_address"), ("orders_order", "customers_address")]:
        assert fks[pair]["cross_context"], pair


def test_tables_written_by_more_than_one_context(shop_map: dict[str, Any]) -> None:
    shared = {s["table"]: s["writers"] for s in shop_map["shared_writes"]}
    assert shared["catalog_product"] == ["inventory", "orders"]  # T4a, T4b
    assert shared["orders_order"] == ["orders", "payments"]  # T13
    foreign = {(w["table"], w["writer"], w["where"]) for w in shop_map["foreign_writes"]}
    assert ("catalog_product", "orders", "monolith/orders/services.py:76") in foreign
    t13 = next(n for n, line in enumerate((ROOT / "monolith/payments/receivers.py").read_text().splitlines(), 1)
               if "update(status=Order.Status.PAID)" in line)
    assert ("orders_order", "payments", f"monolith/payments/receivers.py:{t13}") in foreign
    assert ("customers_profile", "orders", "monolith/orders/receivers.py:13") in foreign  # T11
    assert any(t == "catalog_product" and w == "inventory" and where.startswith("monolith/utils.py:")
               for t, w, where in foreign)  # T4a: the line in utils, the writer inventory


def test_order_placement_is_one_transaction_over_seven_contexts(shop_map: dict[str, Any]) -> None:
    tx = {t["where"]: t for t in shop_map["cross_context_transactions"]}
    place = tx["monolith/orders/services.py:51"]  # T7
    assert place["contexts"] == ["catalog", "customers", "inventory", "notifications", "orders",
                                 "payments", "shipping"]
    assert place["endpoints"] == ["POST /api/orders/"]
    assert {"catalog_product", "payments_paymentattempt", "shipping_shipment",
            "notifications_outboxemail", "customers_profile"} <= set(place["tables"])


def test_signals_across_contexts_with_their_send_sites(shop_map: dict[str, Any]) -> None:
    placed = {s["to_context"]: s for s in shop_map["signals"]
              if s["signal"] == "monolith.orders.signals.order_placed"}
    assert set(placed) == {"inventory", "payments", "notifications", "orders"}
    assert placed["payments"]["cross_context"] and not placed["orders"]["cross_context"]
    assert placed["inventory"]["sent_at"] == ["monolith/orders/services.py:80"]  # T5
    chain = [s for s in shop_map["signals"] if s["signal"] == "monolith.payments.signals.payment_authorized"]
    assert [(s["from_context"], s["to_context"], s["where"]) for s in chain] == [
        ("payments", "shipping", "monolith/shipping/receivers.py:10")]  # T5b
    saved = [s for s in shop_map["signals"] if s["sender"] == "shipping.Shipment"]
    assert [(s["from_context"], s["to_context"]) for s in saved] == [("shipping", "notifications")]


def test_imports_show_the_hidden_cycle_and_the_god_module(shop_map: dict[str, Any]) -> None:
    cycles = {tuple(c["apps"]): c for c in shop_map["import_cycles"]}
    assert cycles[("catalog", "inventory")] == {"apps": ["catalog", "inventory"],
                                                "where": "monolith/catalog/models.py:57",
                                                "hidden_by_local_import": True}  # T8
    utils = next(m for m in shop_map["shared_modules"] if m["module"] == "monolith.utils")
    contexts = {"catalog", "customers", "inventory", "notifications", "orders", "payments", "shipping"}
    assert contexts <= set(utils["importers"])  # T3: every context (the shop's glue too: its nightly job)


def test_tangles_md_says_exactly_which_ids_the_tool_finds(shop_map: dict[str, Any]) -> None:
    text = (ROOT / "monolith" / "TANGLES.md").read_text()
    section = text.split("## What `strangler map` finds", 1)[1]
    claimed = set(re.findall(r"^- \*\*(T\w+)\*\*", section.split("Not found", 1)[0], re.M))
    found = {t["id"] for t in shop_map["tangles"] if t["id"]}
    assert found == claimed
    by_id = {t["id"]: t for t in shop_map["tangles"] if t["id"]}
    assert by_id["T7"]["kind"] == "cross-context-transaction"
    assert by_id["T4b"]["kind"] == by_id["T13"]["kind"] == by_id["T11"]["kind"] == "foreign-write"
