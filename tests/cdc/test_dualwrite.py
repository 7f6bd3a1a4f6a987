"""The dual-write detector (cdc/dualwrite.py): two real SQLite streams, the same key changed on
both sides, found with both commit times; shown by `strangler status` and `cdc metrics`."""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

import ownership
from cdc import checkpoint, config, dualwrite, prom
from cdc.health import dual_writes
from cdc.keys import KeyLog
from cli.status import dual_write_lines, render
from control.status import collect
from tests.cdc.ownership_shop import Shop, rows, run_sql, running, shop, wait_for

__all__ = ["running", "shop"]  # fixtures


def both_sides_write_product_1(shop: Shop, running: Any) -> None:
    """The monolith (the owner) changes products 1 and 2; the catalog, around its guard,
    product 1 too. The streams run one after the other, so the test needs no echo
    suppression (another part): the reverse stream starts after the forward one applied."""
    fwd = running(shop.fwd)
    wait_for(lambda: rows(shop.catalog, "SELECT count(*) FROM products") == [(2,)], "the copy", fwd.errors)
    run_sql(shop.monolith, "UPDATE catalog_product SET price = 11.00 WHERE id = 1",
            "UPDATE catalog_product SET name = 'teapot' WHERE id = 2")
    wait_for(lambda: rows(shop.catalog, "SELECT name, price_cents FROM products ORDER BY product_id")
             == [("mug", 1100), ("teapot", 2000)], "the monolith's changes", fwd.errors)
    fwd.pipe.stop()
    fwd.thread.join(30)
    assert not fwd.errors, fwd.errors
    rev = running(shop.rev)
    wait_for(lambda: rows(shop.catalog, "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' "
                                        "AND name LIKE 'strangler_rev_%'") == [(3,)],
             "the reverse stream's triggers", rev.errors)
    run_sql(shop.catalog, "UPDATE products SET name = 'cup' WHERE product_id = 1")  # a stray write
    wait_for(lambda: len(shop.dead(shop.monolith)) == 1, "the catalog's change", rev.errors)
    rev.pipe.stop()
    rev.thread.join(30)
    assert not rev.errors, rev.errors


def test_a_key_changed_through_both_streams_is_a_dual_write(shop: Shop, running: Any) -> None:
    both_sides_write_product_1(shop, running)
    # the catalog's write was not applied (the monolith owns products) ...
    assert rows(shop.monolith, "SELECT name FROM catalog_product WHERE id = 1") == [("mug",)]
    # ... and both sides' changes of product 1 are found, in the monolith's terms
    group = ownership.load(shop.own).group("catalog")
    found = dualwrite.find(shop.fwd, shop.rev, group)
    assert [(d.group, d.table, d.key) for d in found] == [("catalog", "catalog_product", {"id": 1})]
    assert found[0].forward_ts_ms > 0 and found[0].reverse_ts_ms > 0
    assert dualwrite.detect(config.load(shop.streams)) == {"catalog": found}
    # outside the window: forgotten
    far = found[0].reverse_ts_ms + 61_000
    assert dualwrite.find(shop.fwd, shop.rev, group, window_s=60, now_ms=far) == []
    run_sql(shop.catalog, "UPDATE strangler_cdc_recent_keys SET ts_min = ts_min - 120000, ts_max = ts_max - 120000")
    assert dualwrite.find(shop.fwd, shop.rev, group, now_ms=found[0].reverse_ts_ms) == []


class _Router:
    base_url = "http://router.invalid"

    def status(self) -> dict[str, Any]:
        return {"routes": {}}

    def overview(self) -> dict[str, Any]:  # what `strangler status` reads (router/overview.py)
        return {"status": self.status(), "streams": [], "rollouts": []}


def test_status_and_metrics_show_the_dual_writes(shop: Shop, running: Any, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    both_sides_write_product_1(shop, running)
    monkeypatch.setenv("STRANGLER_STREAMS", shop.streams)
    monkeypatch.setenv("STRANGLER_STATE_DIR", str(tmp_path / "state"))
    _doc, summary = collect(_Router(), None)  # type: ignore[arg-type]
    assert summary["dual_writes"]["count"] == 1  # in `strangler status --json`
    console = Console(record=True, width=200)
    console.print(render(summary, title="status"))
    assert 'DUAL WRITES 1 key(s)' in console.export_text()  # and in its table
    dw = dual_writes(shop.streams)
    assert dw["count"] == 1 and dw["groups"] == {"catalog": 1} and "error" not in dw
    assert dw["keys"][0]["key"] == {"id": 1} and dw["keys"][0]["table"] == "catalog_product"
    lines = dual_write_lines(dw)
    assert "DUAL WRITES" in lines[0] and 'catalog_product {"id": 1}' in lines[1]
    views = [prom.StreamView("fwd", runs={"both": {"state": "streaming", "events": 3, "lag_ms": 0.0,
                                                    "dead_letters": 0, "pid": os.getpid()}})]
    text = prom.render(views, dw["groups"])
    assert 'strangler_cdc_dual_writes{group="catalog"} 1.0\n' in text
    assert "# TYPE strangler_cdc_dual_writes gauge" in text


def log_of(table: str, keys: list[int], ts: list[int], *, tcol: str = "product_id") -> KeyLog:
    log = KeyLog(table, ["id"], [tcol], [None])
    for k, t in zip(keys, ts, strict=True):
        log.add({"id": k}, t)
    return log


def test_the_sink_keeps_only_the_window_and_at_most_a_cap_of_keys(shop: Shop) -> None:
    import sqlalchemy as sa

    from cdc.sinks.sqlalchemy import make_engine

    engine = make_engine(f"sqlite:///{shop.catalog}")
    checkpoint.ensure(engine)
    with engine.begin() as conn:
        checkpoint.record_recent(conn, "fwd", [log_of("catalog_product", [1], [1_000])])
        checkpoint.record_recent(conn, "fwd", [log_of("catalog_product", [2], [90_000])])
        checkpoint.record_recent(conn, "fwd", [log_of("catalog_product", [2], [95_000])])
        checkpoint.prune_recent(conn, "fwd", older_than_ms=50_000)
        assert checkpoint.recent_changes(conn, "fwd", 0) == [
            ("catalog_product", '{"id":2}', '{"product_id":2}', 95_000)]
        checkpoint.record_recent(conn, "fwd", [log_of("t", [i, i + 10], [100_000 + i] * 2) for i in range(5)])
        checkpoint.prune_recent(conn, "fwd", older_than_ms=0, cap=6)  # whole batches, newest first
        assert sorted((t, k) for t, k, _tk, _ts in checkpoint.recent_changes(conn, "fwd", 0)) == sorted(
            ("t", f'{{"id":{k}}}') for i in (2, 3, 4) for k in (i, i + 10))
        assert conn.execute(sa.select(sa.func.count()).select_from(checkpoint.recent)).scalar_one() == 3
    engine.dispose()


def test_a_converted_key_is_recorded_in_both_terms_and_a_bad_one_is_refused() -> None:
    log = KeyLog("products", ["product_id", "sku"], ["id", "code"], [None, str.upper])
    log.add({"product_id": 7, "sku": "ab"}, 5)
    log.add({"product_id": Decimal("8"), "sku": "cd"}, 3)  # an integral Decimal compares as an int
    with pytest.raises(KeyError):
        log.add({"product_id": 9}, 4)
    assert (len(log), log.ts_min, log.ts_max) == (2, 3, 5)
    assert KeyLog.keys(log.body()) == [('{"product_id":7,"sku":"ab"}', '{"code":"AB","id":7}'),
                                       ('{"product_id":8,"sku":"cd"}', '{"code":"CD","id":8}')]


def test_find_refuses_streams_that_are_not_the_groups(shop: Shop) -> None:
    group = ownership.load(shop.own).group("catalog")
    with pytest.raises(config.ConfigError, match="not the two sides' streams"):
        dualwrite.find(shop.fwd, shop.fwd, group)


@pytest.mark.postgres
@pytest.mark.slow
def test_on_postgresql_recorded_keys_keep_the_newest_change_per_key(pg_server: Any) -> None:
    """A key twice in one batch and again in a later one, and another stream's: one key each,
    the newest time."""
    import os

    from cdc.sinks.sqlalchemy import make_engine

    engine = make_engine(pg_server.create_database(f"recent_{os.urandom(3).hex()}"))
    checkpoint.ensure(engine)
    n = 200
    with engine.begin() as conn:
        checkpoint.record_recent(conn, "fwd", [log_of("items", [*range(n), 0], [*(1_000 + i for i in range(n)), 5_000],
                                                      tcol="pid")])
        checkpoint.record_recent(conn, "fwd", [log_of("items", [1], [6_000], tcol="pid")])
        checkpoint.record_recent(conn, "rev", [log_of("items", [1], [7_000], tcol="pid")])
        got = {(t, k): (tk, ts) for t, k, tk, ts in checkpoint.recent_changes(conn, "fwd", 0)}
    engine.dispose()
    assert len(got) == n
    assert got[("items", '{"id":0}')] == ('{"pid":0}', 5_000)  # the batch's newest time
    assert got[("items", '{"id":1}')] == ('{"pid":1}', 6_000)
    assert got[("items", f'{{"id":{n - 1}}}')] == (f'{{"pid":{n - 1}}}', 5_000)
