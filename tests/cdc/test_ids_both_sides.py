"""Both sides insert into the same logical table at once, with the block strategy, while the
forward stream copies side A's rows into B: every id unique, every row present, no row of B
overwritten by one of A's. SQLite (trigger CDC) and real PostgreSQL (logical decoding).

A is the monolith (keeps [1, 1e9)), B the catalog service ([1e9, 2e9)), as in the shop.
After the initial copy, round 0 inserts on both sides while the stream is stopped, so
without disjoint blocks the two sides' next ids are the same ones for sure (B's rows would
be replaced by A's); round 1 inserts from two threads while the stream runs. (B's rows are
created after the initial copy: a copy deletes target rows the source lacks.)
"""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from cdc import ids
from cdc.config import StreamConfig, parse
from cdc.pipeline import Pipeline
from cdc.sources import make_source

MONOLITH_BLOCK, CATALOG_BLOCK = (1, 1_000_000_000), (1_000_000_000, 2_000_000_000)
ROUND0, ROUND1 = 5, 40


class Side:
    def __init__(self, url: str, table: str, run: Callable[[str, tuple[Any, ...]], list[Any]],
                 ph: str) -> None:
        self.url, self.table, self.run, self.ph = url, table, run, ph

    def insert(self, name: str, side: str) -> int:
        got = self.run(f"INSERT INTO {self.table} (name, side) VALUES ({self.ph}, {self.ph}) RETURNING id",
                       (name, side))
        return int(got[0][0])

    def rows(self) -> dict[int, tuple[str, str]]:
        return {r[0]: (r[1], r[2]) for r in self.run(f"SELECT id, name, side FROM {self.table}", ())}


def sqlite_side(path: Path, table: str) -> Side:
    def run(sql: str, args: tuple[Any, ...]) -> list[Any]:
        conn = sqlite3.connect(path, timeout=30)
        try:
            got = conn.execute(sql, args).fetchall()
            conn.commit()
            return got
        finally:
            conn.close()

    run(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, side TEXT NOT NULL)", ())
    return Side(f"sqlite:///{path}", table, run, "?")


def pg_side(dsn: str, table: str, id_type: str) -> Side:
    def run(sql: str, args: tuple[Any, ...]) -> list[Any]:
        conn = psycopg2.connect(dsn)
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(sql, args or None)
                return cur.fetchall() if cur.description else []
        finally:
            conn.close()

    run(f"CREATE TABLE {table} (id {id_type} PRIMARY KEY, name text NOT NULL, side text NOT NULL)", ())
    return Side(dsn, table, run, "%s")


def stream(a: Side, b: Side, slot: str = "") -> StreamConfig:
    source: dict[str, Any] = {"url": a.url}
    if slot:
        source.update(slot=slot, publication=slot)
    return parse({"streams": {"ids": {
        "source": source, "target": {"url": b.url},
        "tables": {a.table: {"target": b.table}}}}}).stream("ids")


def both_sides_insert(a: Side, b: Side, cfg: StreamConfig) -> None:
    ids.prepare_owner(a.url, [a.table], MONOLITH_BLOCK)
    ids.prepare_owner(b.url, [b.table], CATALOG_BLOCK)
    copied = [a.insert(f"copy-{i}", "monolith") for i in range(3)]
    Pipeline(cfg, on_tick=lambda m: None).run(until=lambda: True)  # the initial copy; capture on
    assert b.rows().keys() == set(copied)
    mine_a = copied + [a.insert(f"a0-{i}", "monolith") for i in range(ROUND0)]
    mine_b = [b.insert(f"b0-{i}", "catalog") for i in range(ROUND0)]

    pipe = Pipeline(cfg, on_tick=lambda m: None)
    errors: list[BaseException] = []

    def run_stream() -> None:
        try:
            pipe.run()
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    runner = threading.Thread(target=run_stream)
    runner.start()
    try:
        start = threading.Barrier(2)

        def writer(side: Side, label: str, into: list[int]) -> None:
            start.wait(timeout=30)
            for i in range(ROUND1):
                into.append(side.insert(f"{label[0]}1-{i}", label))

        threads = [threading.Thread(target=writer, args=(a, "monolith", mine_a)),
                   threading.Thread(target=writer, args=(b, "catalog", mine_b))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        expected_a = a.rows()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not errors:
            if expected_a.keys() <= b.rows().keys():
                break
            time.sleep(0.1)
    finally:
        pipe.stop()
        runner.join(timeout=60)
    assert not errors, errors

    got_b = b.rows()
    assert len(mine_a) - 3 == len(mine_b) == ROUND0 + ROUND1
    assert all(MONOLITH_BLOCK[0] <= i < MONOLITH_BLOCK[1] for i in mine_a), mine_a
    assert all(CATALOG_BLOCK[0] <= i < CATALOG_BLOCK[1] for i in mine_b), mine_b
    assert len(set(mine_a) | set(mine_b)) == len(mine_a) + len(mine_b)  # every id unique
    assert {i: got_b[i] for i in expected_a} == expected_a  # every A row copied into B
    assert all(got_b[i][1] == "catalog" for i in mine_b)  # none of B's rows overwritten
    assert len(got_b) == len(expected_a) + len(mine_b)


def test_both_sqlite_sides_insert_at_once_and_every_id_stays_unique(tmp_path: Path) -> None:
    a = sqlite_side(tmp_path / "monolith.sqlite3", "catalog_product")
    b = sqlite_side(tmp_path / "catalog.sqlite3", "products")
    both_sides_insert(a, b, stream(a, b))


@pytest.mark.postgres
def test_both_postgres_sides_insert_at_once_and_every_id_stays_unique(pg_server: Any) -> None:
    tag = uuid.uuid4().hex[:8]
    a = pg_side(pg_server.create_database(f"ids_a_{tag}"), "catalog_product",
                "int GENERATED BY DEFAULT AS IDENTITY")  # Django's AutoField on PostgreSQL
    b = pg_side(pg_server.create_database(f"ids_b_{tag}"), "products", "serial")  # the catalog's
    cfg = stream(a, b, slot=f"ids_{tag}")
    try:
        both_sides_insert(a, b, cfg)
    finally:
        source = make_source(cfg, [t.source for t in cfg.tables])
        try:
            source.drop()
        finally:
            source.close()


@pytest.mark.postgres
def test_both_postgres_sides_insert_at_once_under_streams_both_ways(pg_server: Any) -> None:
    """Forward (A → B) and reverse (B → A, no copy) run at once while both sides insert: every
    id unique, every row on both sides, none bounced back. (On SQLite an allocator follows the
    largest id present, so once B's rows are copied into A, A's next ids are in B's block:
    there, one inserter per table — ownership — is what keeps ids apart; see README.)"""
    tag = uuid.uuid4().hex[:8]
    a = pg_side(pg_server.create_database(f"ids_a_{tag}"), "catalog_product", "int GENERATED BY DEFAULT AS IDENTITY")
    b = pg_side(pg_server.create_database(f"ids_b_{tag}"), "products", "serial")
    ids.prepare_owner(a.url, [a.table], MONOLITH_BLOCK)
    ids.prepare_owner(b.url, [b.table], CATALOG_BLOCK)
    streams = parse({"streams": {
        f"fwd_{tag}": {"source": {"url": a.url}, "target": {"url": b.url},
                       "tables": {a.table: {"target": b.table}}},
        f"rev_{tag}": {"source": {"url": b.url}, "target": {"url": a.url}, "initial": "none",
                       "tables": {b.table: {"target": a.table}}}}})
    fwd, rev = streams.stream(f"fwd_{tag}"), streams.stream(f"rev_{tag}")
    pipes = [Pipeline(cfg, on_tick=lambda m: None) for cfg in (fwd, rev)]
    errors: list[BaseException] = []

    def run(pipe: Pipeline) -> None:
        try:
            pipe.run()
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    runners = [threading.Thread(target=run, args=(p,)) for p in pipes]
    for t in runners:
        t.start()
    mine: dict[str, list[int]] = {"monolith": [], "catalog": []}
    try:
        # both streams stream before anyone inserts: a slot is listed before it is consistent,
        # and a stream that copies nothing (initial: none) would miss what came before that
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not errors and not all(
                p.metrics.state == "streaming" for p in pipes):
            time.sleep(0.1)
        assert not errors and all(p.metrics.state == "streaming" for p in pipes), \
            ([p.metrics.state for p in pipes], errors)  # writing before the copy ends would lose rows
        start = threading.Barrier(2)

        def writer(side: Side, label: str) -> None:
            start.wait(timeout=30)
            for i in range(ROUND1):
                mine[label].append(side.insert(f"{label}-{i}", label))

        writers = [threading.Thread(target=writer, args=(a, "monolith")),
                   threading.Thread(target=writer, args=(b, "catalog"))]
        for t in writers:
            t.start()
        for t in writers:
            t.join(timeout=120)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not errors:
            if len(a.rows()) == len(b.rows()) == 2 * ROUND1:
                break
            time.sleep(0.1)
    finally:
        for p in pipes:
            p.stop()
        for t in runners:
            t.join(timeout=60)
        for cfg in (fwd, rev):
            source = make_source(cfg, [t.source for t in cfg.tables])
            try:
                source.drop()
            finally:
                source.close()
    assert not errors, errors
    got_a, got_b = a.rows(), b.rows()
    assert all(MONOLITH_BLOCK[0] <= i < MONOLITH_BLOCK[1] for i in mine["monolith"])
    assert all(CATALOG_BLOCK[0] <= i < CATALOG_BLOCK[1] for i in mine["catalog"])
    assert len(set(mine["monolith"]) | set(mine["catalog"])) == 2 * ROUND1  # every id unique
    assert got_a == got_b and len(got_a) == 2 * ROUND1  # every row on both sides, once
    assert {i for i, (_n, side) in got_a.items() if side == "catalog"} == set(mine["catalog"])
