"""A relation is checked against the mapping as of the stream's position: DDL made while the
stream was stopped does not block the replay of what came before it."""

from __future__ import annotations

from typing import Any

import pytest

from cdc.config import parse
from cdc.errors import SchemaChanged
from cdc.mapping import TableMapping, TableSchema, compile_stream
from tests.cdc.conftest import Env, sql, stream_spec
from tests.cdc.test_stream_features import running, wait_for

OLD = {"id": "integer", "name": "text", "price": "numeric(10,2)"}
NOW = {**OLD, "color": "text"}


def mapping(source: dict[str, str], target: dict[str, str], required: tuple[str, ...] = ()) -> TableMapping:
    cfg = parse({"streams": {"s": {"source": {"url": "postgresql://h/src"}, "target": {"url": "postgresql://h/t"},
                                   "tables": {"items": "items"}}}}).stream("s")
    src = TableSchema(name="items", columns=dict(source), pk=("id",))
    tgt = TableSchema(name="items", columns=dict(target), pk=("id",), unique_sets=(("id",),), required=required)
    return compile_stream(cfg, {"items": src}, {"items": tgt})["items"]


def test_an_older_relation_is_history_when_the_table_has_changed_since() -> None:
    tm = mapping(NOW, NOW)  # streams.yaml and the target already follow today's table
    assert tm.check_relation(OLD, current=lambda: NOW, at="0/10#1") == []  # rows from before the DDL
    assert tm.to_target({"id": 1, "name": "a", "price": 1}) == {"id": 1, "name": "a", "price": 1}
    tm.check_relation(NOW, current=lambda: NOW)  # then the DDL itself arrives: covered
    dropped_since = mapping(OLD, OLD)  # a column that existed then and is gone now
    assert dropped_since.check_relation(NOW, current=lambda: OLD) == []


def test_live_ddl_the_mapping_does_not_cover_still_stops_and_says_where() -> None:
    tm = mapping(OLD, OLD)
    with pytest.raises(SchemaChanged, match=r"changed at 0/20#1: new column 'color' \(text\)"):
        tm.check_relation(NOW, current=lambda: NOW, at="0/20#1")


def test_history_that_cannot_be_applied_stops_with_the_fix() -> None:
    tm = mapping(NOW, NOW, required=("color",))
    with pytest.raises(SchemaChanged, match=r"'color' did not exist yet.*NOT NULL without a default"):
        tm.check_relation(OLD, current=lambda: NOW)
    retyped = mapping({**OLD, "name": "integer"}, {**OLD, "name": "integer"})
    with pytest.raises(SchemaChanged, match="'name' was text here and is integer now"):
        retyped.check_relation(OLD, current=lambda: {**OLD, "name": "integer"})


@pytest.mark.postgres
def test_ddl_made_while_the_stream_was_stopped_replays_then_follows(cdc_env: Env) -> None:
    env = cdc_env
    sql(env.src, "INSERT INTO catalog_category (name) VALUES ('c')")
    sql(env.src, "INSERT INTO catalog_product (category_id, name, price) SELECT 1, 'p' || g, g "
                 "FROM generate_series(1, 5) g")

    def cfg(**product: Any) -> Any:
        spec = stream_spec(env.src, env.tgt)
        spec["tables"]["catalog_product"]["columns"].update(product)
        return parse({"streams": {env.name: spec}}).stream(env.name)

    def both() -> bool:
        a = sql(env.src, "SELECT id, name, color FROM catalog_product ORDER BY id")
        return a == sql(env.tgt, "SELECT id, title, color FROM products ORDER BY id")

    first = cfg()
    with running(first):
        wait_for(lambda: sql(env.tgt, "SELECT count(*) FROM products") == [(5,)], 30, "initial copy")
    # stopped: a change, the DDL, a change that uses the new column
    sql(env.src, "UPDATE catalog_product SET name = 'before the ddl' WHERE id = 1")
    sql(env.src, "ALTER TABLE catalog_product ADD COLUMN color text")
    sql(env.src, "INSERT INTO catalog_product (category_id, name, price, color) VALUES (1, 'after', 1, 'red')")
    sql(env.tgt, "ALTER TABLE products ADD COLUMN color text")  # the team follows the change
    with running(cfg(color="color")):
        wait_for(both, 30, "the changes on both sides of the DDL")
    assert sql(env.tgt, "SELECT title, color FROM products WHERE id IN (1, 6) ORDER BY id") == [
        ("before the ddl", None), ("after", "red")]
