"""The initial copy by COPY (cdc/pgcopy.py), PostgreSQL to PostgreSQL on the direct path:
the same rows as the copy by events, resumable by chunk, and by events wherever COPY would
not do exactly what the events do (a refused value, a filter, a target that holds rows, a
side that does not own the table)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from cdc import pgcopy
from cdc.pipeline import Pipeline
from cdc.sinks.owned import Rule
from tests.cdc.conftest import Env, source_rows, sql, target_rows, wait_for
from tests.cdc.test_stream_features import config


def copy_once(env: Env, **extra: Any) -> None:
    cfg = config(env, **extra)
    pipe = Pipeline(cfg, on_tick=lambda m: None)
    pipe.run(until=lambda: pipe.metrics.state == "streaming")


def seed_awkward(env: Env, n: int) -> None:
    """Text COPY must escape (tabs, newlines, backslashes, unicode), NULLs, rounding."""
    sql(env.src, "INSERT INTO catalog_category (name) VALUES ('tab\there'), (E'new\\nline'), ('back\\slash'), ('é')")
    sql(env.src, f"INSERT INTO catalog_product (category_id, name, price, description) "
                 f"SELECT 1 + g % 4, 'p' || g || E'\\t\\\\x', g / 7.0, CASE WHEN g % 3 = 0 THEN NULL "
                 f"ELSE repeat('d', g % 50) END FROM generate_series(1, {n}) g")


def applied_twice(env: Env) -> list[Any]:
    return sql(env.tgt, "SELECT id, version FROM applied_log GROUP BY 1, 2 HAVING count(*) > 1")


def test_the_initial_copy_goes_by_copy_and_equals_the_source(cdc_env: Env, caplog: pytest.LogCaptureFixture) -> None:
    seed_awkward(cdc_env, 1000)
    with caplog.at_level(logging.INFO, logger="cdc.pipeline"):
        copy_once(cdc_env)
    assert "copying catalog_product by COPY (binary)" in caplog.text
    assert "copying catalog_category by COPY (binary)" in caplog.text
    assert target_rows(cdc_env.tgt) == source_rows(cdc_env.src)
    assert sql(cdc_env.tgt, "SELECT source_table, state, rows FROM strangler_cdc_snapshot ORDER BY 1") == [
        ("catalog_category", "done", 4), ("catalog_product", "done", 1000)]
    assert applied_twice(cdc_env) == []


def test_a_chunk_the_target_refuses_goes_by_events_and_only_the_bad_row_is_dead_lettered(
        cdc_env: Env, caplog: pytest.LogCaptureFixture) -> None:
    seed_awkward(cdc_env, 1000)
    sql(cdc_env.src, "UPDATE catalog_product SET price = -1 WHERE id = 700")  # CHECK (price_cents >= 0)
    with caplog.at_level(logging.INFO):
        copy_once(cdc_env)
    assert "COPY of a catalog_product chunk refused" in caplog.text
    want = source_rows(cdc_env.src)
    want["products"] = [r for r in want["products"] if r[0] != 700]
    assert target_rows(cdc_env.tgt) == want
    dead = sql(cdc_env.tgt, "SELECT source_table, reason FROM strangler_cdc_dead_letter")
    assert len(dead) == 1 and dead[0][0] == "catalog_product" and "price_cents" in dead[0][1], dead
    assert applied_twice(cdc_env) == []


def test_a_target_that_holds_rows_is_copied_by_events_and_its_ghosts_swept(
        cdc_env: Env, caplog: pytest.LogCaptureFixture) -> None:
    seed_awkward(cdc_env, 500)
    sql(cdc_env.tgt, "INSERT INTO categories VALUES (1, 'stale'), (99, 'ghost')")
    with caplog.at_level(logging.INFO, logger="cdc.pipeline"):
        copy_once(cdc_env)
    assert "copying catalog_category by events: the target table holds rows" in caplog.text
    assert "copying catalog_product by COPY" in caplog.text
    assert target_rows(cdc_env.tgt) == source_rows(cdc_env.src)


def test_a_filtered_table_is_copied_by_events(cdc_env: Env, caplog: pytest.LogCaptureFixture) -> None:
    seed_awkward(cdc_env, 300)
    with caplog.at_level(logging.INFO, logger="cdc.pipeline"):
        copy_once(cdc_env, product={"filter": [{"column": "price", "op": "gte", "value": 20}]})
    assert "copying catalog_product by events: the table has a filter" in caplog.text
    got = sql(cdc_env.tgt, "SELECT id FROM products ORDER BY id")
    assert got == sql(cdc_env.src, "SELECT id FROM catalog_product WHERE price >= 20 ORDER BY id") and got


def test_a_side_that_does_not_own_the_table_never_copies_by_copy() -> None:
    rule = Rule(table="catalog_product", target="products", group="catalog", side="monolith",
                owner="catalog", rows=False, columns=frozenset({"stock_count"}))
    # refused before the mapping or the target are looked at
    fast, why = pgcopy.plan(None, rule, None)  # type: ignore[arg-type]
    assert fast is None and why == "catalog owns the table"


def test_kill_9_between_copy_chunks_of_cdc_run_resumes_and_verify_finds_them_equal(cdc_env: Env) -> None:
    """As an engineer meets it: `strangler cdc run` killed (-9, no cleanup) right after a
    COPY chunk committed, run again, changes meanwhile; then `strangler verify` says equal."""
    from cdc.faults import FAULT_EXIT

    env = cdc_env
    seed_awkward(env, 3000)  # 10 chunks of 300
    proc = env.start(faults="snapshot.after_copy_chunk=exit@4")
    assert proc.wait(60) == FAULT_EXIT, env.log_text()
    state = sql(env.tgt, "SELECT state, rows FROM strangler_cdc_snapshot WHERE source_table = 'catalog_product'")
    assert state and state[0][0] == "copying" and 0 < state[0][1] < 3000, state  # part of it, committed
    sql(env.src, "UPDATE catalog_product SET name = 'renamed', version = version + 1 WHERE id IN (5, 2900)")
    sql(env.src, "DELETE FROM catalog_product WHERE id IN (6, 2950)")
    env.start()
    wait_for(lambda: target_rows(env.tgt) == source_rows(env.src), 60, "the copy to finish after the restart")
    out = env.cli("verify", env.name, "--json")
    assert out.returncode == 0, out.stdout + out.stderr
    assert applied_twice(env) == []
