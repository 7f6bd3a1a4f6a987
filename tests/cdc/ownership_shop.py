"""A two-database shop for the write-ownership tests: a monolith and a catalog (SQLite),
a forward stream `fwd` (monolith -> catalog) and a reverse one `rev`, and one ownership
group in which the monolith keeps ``stock_count`` whoever owns the products."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

import ownership
from cdc.config import StreamConfig, load
from cdc.pipeline import Pipeline

MONOLITH_DDL = ("CREATE TABLE catalog_product (id INTEGER PRIMARY KEY, name TEXT NOT NULL, "
                "price DECIMAL(10,2) NOT NULL, stock_count INTEGER NOT NULL)")  # no default (Django's is in Python)
# the catalog names its key differently, so keys compared across sides must be mapped
CATALOG_DDL = ("CREATE TABLE products (product_id INTEGER PRIMARY KEY, name TEXT NOT NULL, "
               "price_cents INTEGER NOT NULL, stock_count INTEGER NOT NULL DEFAULT 0)")


def ownership_text(owner: str) -> str:
    return f"""
version: 1
groups:
  catalog:
    owner: {owner}
    sides:
      monolith: {{stream: fwd, tables: [catalog_product]}}
      catalog: {{stream: rev, tables: [products]}}
    keeps:
      monolith: {{catalog_product: [stock_count]}}
"""


def rows(path: Path, sql: str) -> list[Any]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def run_sql(path: Path, *statements: str) -> None:
    conn = sqlite3.connect(path)
    with conn:
        for s in statements:
            conn.execute(s)
    conn.close()


@dataclass
class Shop:
    monolith: Path
    catalog: Path
    own: Path
    fwd: StreamConfig
    rev: StreamConfig
    streams: str  # the path of streams.yaml

    def flip(self, owner: str) -> None:
        ownership.write(self.own, ownership.with_owner(ownership.load(self.own), "catalog", owner))

    def dead(self, db: Path) -> list[tuple[str, str, str]]:
        return rows(db, "SELECT source_table, op, reason FROM strangler_cdc_dead_letter ORDER BY id")


@pytest.fixture
def shop(tmp_path: Path) -> Shop:
    mono, cat = tmp_path / "monolith.sqlite3", tmp_path / "catalog.sqlite3"
    run_sql(mono, MONOLITH_DDL, "INSERT INTO catalog_product VALUES (1, 'mug', 10.00, 5), (2, 'pot', 20.00, 7)")
    run_sql(cat, CATALOG_DDL)
    own = tmp_path / "ownership.yaml"
    own.write_text(ownership_text("monolith"))
    doc = {"ownership": "ownership.yaml", "streams": {
        "fwd": {"source": {"url": f"sqlite:///{mono}"}, "target": {"url": f"sqlite:///{cat}"},
                "tables": {"catalog_product": {"target": "products", "columns": {
                    "id": "product_id", "name": "name",
                    "price": {"to": "price_cents", "convert": "decimal_to_cents"},
                    "stock_count": "stock_count"}}}},
        "rev": {"source": {"url": f"sqlite:///{cat}"}, "target": {"url": f"sqlite:///{mono}"},
                "tables": {"products": {"target": "catalog_product", "columns": {
                    "product_id": "id", "name": "name",
                    "price_cents": {"to": "price", "convert": "cents_to_decimal"},
                    "stock_count": "stock_count"}}}},
    }}
    path = tmp_path / "streams.yaml"
    path.write_text(yaml.safe_dump(doc))
    streams = load(path)
    return Shop(mono, cat, own, streams.stream("fwd"), streams.stream("rev"), str(path))


def wait_for(check: Callable[[], bool], what: str, errors: list[BaseException], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert not errors, errors
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


class Running:
    def __init__(self, cfg: StreamConfig) -> None:
        self.pipe = Pipeline(cfg, on_tick=lambda m: None)
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        try:
            self.pipe.run()
        except BaseException as exc:  # surfaced by the test
            self.errors.append(exc)


@pytest.fixture
def running() -> Iterator[Callable[[StreamConfig], Running]]:
    started: list[Running] = []

    def start(cfg: StreamConfig) -> Running:
        r = Running(cfg)
        r.thread.start()
        started.append(r)
        return r

    yield start
    for r in started:
        r.pipe.stop()
        r.thread.join(30)
