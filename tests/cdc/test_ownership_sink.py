"""The sink writes only what its stream's source side owns (ownership.yaml; cdc/sinks/owned.py).

SQLite, embedded: a monolith and a catalog database, a forward stream (monolith -> catalog)
and a reverse one (catalog -> monolith), one ownership group in which the monolith keeps
``stock_count`` whoever owns the products.
"""

from __future__ import annotations

import logging
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from cdc.config import StreamConfig, parse
from cdc.events import ChangeEvent, Position
from cdc.pipeline import open_stream
from cdc.sinks.sqlalchemy import SqlSink
from tests.cdc.ownership_shop import Shop, ownership_text, rows, run_sql, running, shop, wait_for

__all__ = ["running", "shop"]  # fixtures

def test_after_the_catalog_owns_products_the_forward_stream_carries_only_stock(shop: Shop, running: Any) -> None:
    """The lost update of issue 11: the monolith's stock change must not carry its older price."""
    fwd = running(shop.fwd)
    wait_for(lambda: rows(shop.catalog, "SELECT count(*) FROM products") == [(2,)], "the copy", fwd.errors)
    shop.flip("catalog")  # what `strangler own catalog --by catalog` does to the file
    # the catalog changes a price; the reverse stream has not carried it back yet
    run_sql(shop.catalog, "UPDATE products SET price_cents = 1500 WHERE product_id = 1")
    # inventory, in the monolith, changes the stock of the same product
    run_sql(shop.monolith, "UPDATE catalog_product SET stock_count = 4 WHERE id = 1")
    wait_for(lambda: rows(shop.catalog, "SELECT stock_count FROM products WHERE product_id = 1") == [(4,)],
             "the stock change", fwd.errors)
    assert rows(shop.catalog, "SELECT * FROM products ORDER BY product_id") == [
        (1, "mug", 1500, 4), (2, "pot", 2000, 7)]
    assert shop.dead(shop.catalog) == []


def sink_for(cfg: StreamConfig) -> SqlSink:
    source, engine, mappings = open_stream(cfg)
    source.close()
    return SqlSink(stream=cfg.name, engine=engine, mappings=mappings, ownership_path=cfg.ownership_path)


class Feed:
    """Hand-made events of one source table into a sink, one source transaction each."""

    def __init__(self, sink: SqlSink, table: str, key: str = "id") -> None:
        self.sink, self.table, self.key, self.n = sink, table, key, 0

    def __call__(self, op: str, key: int | None = None, before: dict[str, Any] | None = None,
                 after: dict[str, Any] | None = None) -> None:
        self.n += 1
        ev = ChangeEvent(op=op, table=self.table, key={} if key is None else {self.key: key},
                         before=before, after=after, position=Position(self.n, 0), ts_ms=1)
        self.sink.begin()
        self.sink.write([ev])
        self.sink.commit()


def product(id_: int, name: str, price: str, stock: int) -> dict[str, Any]:
    return {"id": id_, "name": name, "price": Decimal(price), "stock_count": stock}


def test_a_side_that_does_not_own_a_table_updates_only_its_kept_columns(shop: Shop) -> None:
    run_sql(shop.catalog, "INSERT INTO products VALUES (1, 'mug', 1500, 5), (2, 'pot', 2000, 7)")
    shop.flip("catalog")
    sink = sink_for(shop.fwd)
    feed = Feed(sink, "catalog_product")
    try:
        # inventory's stock change, with the monolith's (older) price in the image: stock only
        feed("u", 1, before=product(1, "mug", "10.00", 5), after=product(1, "mug", "10.00", 4))
        assert rows(shop.catalog, "SELECT * FROM products WHERE product_id = 1") == [(1, "mug", 1500, 4)]
        assert shop.dead(shop.catalog) == []
        # everything else the monolith's side cannot write went around its guard: dead-lettered
        feed("c", 3, after=product(3, "new", "1.00", 1))
        feed("d", 2, before=product(2, "pot", "20.00", 7))
        feed("t")
        feed("u", 9, before=product(9, "gone", "1.00", 1), after=product(9, "gone", "1.00", 2))
        # a price change: not applied; its stock part is
        feed("u", 1, before=product(1, "mug", "10.00", 4), after=product(1, "mug", "11.00", 3))
    finally:
        sink.close()
        sink.engine.dispose()
    assert rows(shop.catalog, "SELECT * FROM products ORDER BY product_id") == [(1, "mug", 1500, 3), (2, "pot", 2000, 7)]
    dead = shop.dead(shop.catalog)
    assert [d[1] for d in dead] == ["c", "d", "t", "u", "u"]
    for _table, _op, reason in dead:
        assert "catalog_product" in reason and "owned by catalog" in reason
        assert "bypassed the write guard" in reason and "strangler own catalog --by monolith" in reason
    assert "does not have" in dead[3][2] and "update of price" in dead[4][2]
    assert "stock_count part was applied" in dead[4][2]


def test_the_owner_never_overwrites_the_columns_the_other_side_keeps(shop: Shop) -> None:
    shop.flip("catalog")
    sink = sink_for(shop.rev)  # catalog -> monolith: the monolith keeps stock_count
    feed = Feed(sink, "products", key="product_id")
    cat = {"product_id": 1, "name": "big mug", "price_cents": 1500, "stock_count": 0}
    try:
        feed("u", 1, before={**cat, "name": "mug"}, after=cat)
        # a product the catalog creates: a new row takes the image's stock (the monolith's
        # column has no default), and a later update never overwrites the monolith's stock
        feed("c", 3, after={"product_id": 3, "name": "new", "price_cents": 100, "stock_count": 0})
        run_sql(shop.monolith, "UPDATE catalog_product SET stock_count = 8 WHERE id = 3")
        feed("u", 3, after={"product_id": 3, "name": "newer", "price_cents": 100, "stock_count": 0})
        feed("d", 2, before={"product_id": 2})
    finally:
        sink.close()
        sink.engine.dispose()
    assert rows(shop.monolith, "SELECT id, name, price, stock_count FROM catalog_product ORDER BY id") == [
        (1, "big mug", 15, 5), (3, "newer", 1, 8)]
    assert shop.dead(shop.monolith) == []


def test_the_sink_follows_the_ownership_file_and_keeps_the_last_good_one(
        shop: Shop, caplog: pytest.LogCaptureFixture) -> None:
    run_sql(shop.catalog, "INSERT INTO products VALUES (1, 'mug', 1500, 5)")
    sink = sink_for(shop.fwd)
    feed = Feed(sink, "catalog_product")
    try:
        feed("u", 1, after=product(1, "mug", "10.00", 5))  # the monolith owns: whole rows
        assert rows(shop.catalog, "SELECT price_cents FROM products") == [(1000,)]
        shop.flip("catalog")
        feed("u", 1, after=product(1, "mug", "12.00", 4))  # now only the stock
        assert rows(shop.catalog, "SELECT price_cents, stock_count FROM products") == [(1000, 4)]
        with caplog.at_level(logging.ERROR, logger="cdc.sink"):
            shop.own.write_text(ownership_text("catalog").replace("owner: catalog", "owner: [nonsense"))
            feed("u", 1, after=product(1, "mug", "13.00", 3))  # the last good rules hold
        assert rows(shop.catalog, "SELECT price_cents, stock_count FROM products") == [(1000, 3)]
        assert any("does not load" in r.getMessage() and "keeps the rules" in r.getMessage()
                   for r in caplog.records)
        shop.own.unlink()  # no ownership declared: every column, as before issue 11
        feed("u", 1, after=product(1, "mug", "14.00", 2))
        assert rows(shop.catalog, "SELECT price_cents, stock_count FROM products") == [(1400, 2)]
    finally:
        sink.close()
        sink.engine.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize("n", [3, 80], ids=["values", "copy"])  # pgbulk: VALUES list, COPY + merge
def test_on_postgresql_the_owner_never_overwrites_kept_columns(pg_dsn: str, tmp_path: Path, n: int) -> None:
    import psycopg2

    from cdc.mapping import TableSchema, compile_stream
    from cdc.sinks.sqlalchemy import describe, make_engine

    conn = psycopg2.connect(pg_dsn)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE catalog_product (id int PRIMARY KEY, name text NOT NULL, "
                    "price numeric(10,2) NOT NULL, stock_count int NOT NULL)")
        cur.execute("INSERT INTO catalog_product SELECT g, 'old', 1, 9 FROM generate_series(1, %s) g", (n,))
    (tmp_path / "ownership.yaml").write_text(ownership_text("catalog"))
    cfg = parse({"streams": {"rev": {"source": {"url": "sqlite:///unused"}, "target": {"url": pg_dsn},
                                     "tables": {"products": {"target": "catalog_product", "columns": {
                                         "product_id": "id", "name": "name", "stock_count": "stock_count",
                                         "price_cents": {"to": "price", "convert": "cents_to_decimal"}}}}}}},
                path=str(tmp_path / "streams.yaml")).stream("rev")
    src = TableSchema(name="products", columns={"product_id": "INTEGER", "name": "TEXT", "price_cents": "INTEGER",
                                                "stock_count": "INTEGER"}, pk=("product_id",))
    engine = make_engine(pg_dsn)
    sink = SqlSink(stream="rev", engine=engine, ownership_path=cfg.ownership_path,
                   mappings=compile_stream(cfg, {"products": src}, describe(engine), source_kind="sqlite"))
    events = [ChangeEvent(op="u" if i <= n else "c", table="products", key={"product_id": i}, before=None,
                          after={"product_id": i, "name": "new", "price_cents": 250, "stock_count": 0},
                          position=Position(i, 0), last=i == n + 1) for i in range(1, n + 2)]
    try:
        sink.begin()
        sink.write(events)
        sink.commit()
    finally:
        sink.close()
        engine.dispose()
    with conn.cursor() as cur:
        cur.execute("SELECT name, price, stock_count, count(*) FROM catalog_product GROUP BY 1, 2, 3 ORDER BY 3")
        assert cur.fetchall() == [("new", Decimal("2.50"), 0, 1), ("new", Decimal("2.50"), 9, n)]
    conn.close()
