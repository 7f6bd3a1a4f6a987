"""Rows that arrive incomplete (unchanged TOAST) and partitioned tables, in-process."""

from __future__ import annotations

from typing import Any

import pytest

from cdc.config import parse
from tests.cdc.conftest import Env, sql, target_rows, wait_for
from tests.cdc.test_stream_features import BIG, config, equal, running, seed

pytestmark = pytest.mark.postgres


def dead_letters(env: Env) -> list[tuple[Any, ...]]:
    return sql(env.tgt, "SELECT source_table, op, reason FROM strangler_cdc_dead_letter ORDER BY id")


def big_description(env: Env, ids: str) -> None:
    sql(env.src, f"UPDATE catalog_product SET description = ({BIG}) || id WHERE id IN ({ids})")


@pytest.mark.parametrize("batch_size", [500, 1])  # 1: the key change's two events in two batches
def test_key_change_of_a_row_with_unchanged_toast_keeps_the_row(cdc_env: Env, batch_size: int) -> None:
    env = cdc_env
    seed(env, 5)
    big_description(env, "2, 3")
    with running(config(env, batch_size=batch_size)):
        wait_for(equal(env), 30, "initial copy")
        sql(env.src, "UPDATE catalog_product SET id = 2000 WHERE id = 2")  # only the key changes
        sql(env.src, "UPDATE catalog_product SET id = 3000, name = 'moved' WHERE id = 3")
        wait_for(equal(env), 30, "the key changes")
    ids = [r[0] for r in target_rows(env.tgt)["products"]]
    assert 2000 in ids and 3000 in ids and 2 not in ids and 3 not in ids
    assert sql(env.tgt, "SELECT length(description) FROM products WHERE id IN (2000, 3000)") == [(9601,), (9601,)]
    assert dead_letters(env) == []


def test_row_entering_a_filter_with_unchanged_toast_is_dead_lettered_not_lost(cdc_env: Env) -> None:
    env = cdc_env
    seed(env, 20)
    big_description(env, "3, 4, 5")
    cfg = config(env, product={"filter": [{"column": "price", "op": "gte", "value": 10}]})
    with running(cfg):
        wait_for(lambda: len(target_rows(env.tgt)["products"]) == 11, 30, "filtered copy")
        sql(env.src, "UPDATE catalog_product SET price = 50 WHERE id = 3")  # enters, TOAST unseen
        sql(env.src, "UPDATE catalog_product SET price = 60, id = 5000 WHERE id = 5")  # ... and moves
        sql(env.src, "UPDATE catalog_product SET price = 70 WHERE id = 12")  # the stream goes on
        wait_for(lambda: len(dead_letters(env)) == 2, 30, "the dead letters")
        wait_for(lambda: sql(env.tgt, "SELECT price_cents FROM products WHERE id = 12") == [(7000,)], 30,
                 "the change after them")
        # REPLICA IDENTITY FULL: the old row carries the value, so the row enters complete
        sql(env.src, "ALTER TABLE catalog_product REPLICA IDENTITY FULL")
        sql(env.src, "UPDATE catalog_product SET price = 80 WHERE id = 4")
        wait_for(lambda: sql(env.tgt, "SELECT price_cents FROM products WHERE id = 4") == [(8000,)], 30,
                 "the row entering with REPLICA IDENTITY FULL")
    assert sql(env.tgt, "SELECT description FROM products WHERE id = 4") == \
        sql(env.src, "SELECT description FROM catalog_product WHERE id = 4")
    assert sql(env.tgt, "SELECT count(*) FROM products WHERE id IN (3, 5, 5000)") == [(0,)]
    letters = dead_letters(env)
    assert [(t, op) for t, op, _ in letters] == [("catalog_product", "u"), ("catalog_product", "c")]
    for _t, _op, reason in letters:
        assert "description" in reason and "REPLICA IDENTITY FULL" in reason
        assert "strangler cdc snapshot shop catalog_product" in reason
    status = env.cli("cdc", "status", env.name)
    assert "dead_letters=2" in status.stdout, status.stdout + status.stderr  # visible to the operator


def test_partial_update_of_a_row_missing_from_the_target_is_dead_lettered(cdc_env: Env) -> None:
    env = cdc_env
    seed(env, 5)
    big_description(env, "2")
    with running(config(env)):
        wait_for(equal(env), 30, "initial copy")
        sql(env.tgt, "DELETE FROM products WHERE id = 2")  # damage behind the stream's back
        sql(env.src, "UPDATE catalog_product SET version = 7 WHERE id IN (1, 2)")  # one batch
        wait_for(lambda: len(dead_letters(env)) == 1, 30, "the dead letter")
        wait_for(lambda: sql(env.tgt, "SELECT version FROM products WHERE id = 1") == [(7,)], 30,
                 "the other row of the batch")
    assert "cannot complete row {'id': 2} of products" in dead_letters(env)[0][2]


def test_filter_on_an_unchanged_toast_column_keeps_the_row(cdc_env: Env) -> None:
    env = cdc_env
    seed(env, 5)
    big_description(env, "1, 2, 3, 4, 5")
    sql(env.src, "UPDATE catalog_product SET description = NULL WHERE id = 5")
    cfg = config(env, product={"filter": [{"column": "description", "op": "not_null"}]})
    with running(cfg):
        wait_for(lambda: len(target_rows(env.tgt)["products"]) == 4, 30, "filtered copy")
        sql(env.src, "UPDATE catalog_product SET version = 9 WHERE id = 2")  # description unseen
        wait_for(lambda: sql(env.tgt, "SELECT version FROM products WHERE id = 2") == [(9,)], 30,
                 "the update")
    assert dead_letters(env) == []


PARTITIONED = """
CREATE TABLE readings (id int, region int, note text, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
CREATE TABLE readings_1 PARTITION OF readings FOR VALUES IN (1);
CREATE TABLE readings_2 PARTITION OF readings FOR VALUES IN (2);
"""


def test_partitioned_table_streams_under_its_root(cdc_env: Env) -> None:
    from cdc.sources.postgres import PostgresSource

    env = cdc_env
    sql(env.src, PARTITIONED)
    sql(env.tgt, "CREATE TABLE readings (id int, region int, note text, PRIMARY KEY (id, region))")
    sql(env.src, "INSERT INTO readings SELECT g, 1 + g % 2, 'n' || g FROM generate_series(1, 10) g")
    spec = {"source": {"url": env.src}, "target": {"url": env.tgt}, "tables": {"readings": "readings"}}
    cfg = parse({"streams": {"parts": spec}}).stream("parts")
    both = "SELECT * FROM readings ORDER BY id, region"
    src = PostgresSource(cfg, ["readings"])
    try:
        tables = src.describe(["readings"])
        assert "readings" in tables and "readings_1" not in tables and tables["readings"].pk == ("id", "region")
    finally:
        src.close()
    with running(cfg):
        wait_for(lambda: sql(env.src, both) == sql(env.tgt, both), 30, "the copy")
        sql(env.src, "INSERT INTO readings VALUES (100, 1, 'new')")
        sql(env.src, "UPDATE readings SET note = 'changed' WHERE id = 3")
        sql(env.src, "DELETE FROM readings WHERE id = 4")
        sql(env.src, "UPDATE readings SET region = 2 WHERE id = 5")  # moves to the other partition
        wait_for(lambda: sql(env.src, both) == sql(env.tgt, both), 30, "the stream")
    assert sql(env.tgt, "SELECT region, note FROM readings WHERE id IN (3, 5) ORDER BY id") == \
        [(2, "changed"), (2, "n5")]


def test_partition_changes_decoded_before_the_publication_went_via_the_root(cdc_env: Env) -> None:
    """A stream set up by an older version: its publication published the partitions."""
    env = cdc_env
    sql(env.src, PARTITIONED)
    sql(env.tgt, "CREATE TABLE readings (id int, region int, note text, PRIMARY KEY (id, region))")
    spec = {"source": {"url": env.src}, "target": {"url": env.tgt}, "tables": {"readings": "readings"}}
    cfg = parse({"streams": {"parts": spec}}).stream("parts")
    both = "SELECT * FROM readings ORDER BY id, region"
    with running(cfg):
        wait_for(lambda: sql(env.src, both) == sql(env.tgt, both), 30, "the (empty) copy")
    sql(env.src, f'ALTER PUBLICATION "{cfg.publication}" SET (publish_via_partition_root = false)')
    sql(env.src, "INSERT INTO readings SELECT g, 1 + g % 2, 'n' || g FROM generate_series(1, 4) g")
    with running(cfg):
        wait_for(lambda: sql(env.src, both) == sql(env.tgt, both), 30, "the changes made meanwhile")
