"""streams.yaml loading and mapping validation: every error names its key path and the fix."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from cdc import config
from cdc.config import parse
from cdc.errors import ConfigError, SchemaChanged
from cdc.mapping import TableSchema, compile_stream

REPO = Path(__file__).resolve().parents[2]


def body(**table: Any) -> dict[str, Any]:
    return {"streams": {"s": {"source": {"url": "postgresql://h/src"}, "target": {"url": "sqlite:///t.db"},
                              "tables": {"catalog_product": table or {"target": "products"}}}}}


def test_the_repository_streams_yaml_is_valid() -> None:
    sf = config.load(REPO / "streams.yaml")
    catalog = sf.stream("catalog")
    assert catalog.table("catalog_product").target == "products"


@pytest.mark.parametrize(("data", "path", "words"), [
    ({"streams": {"s": {"source": {"url": "mysql://x"}, "target": {"url": "sqlite:///t"},
                        "tables": {"a": "b"}}}}, "streams.s.source.url", "postgresql://"),
    ({"streams": {"Bad-Name": {}}}, "streams.Bad-Name", "lowercase"),
    (body(target="products", colums={}), "streams.s.tables.catalog_product.colums", "allowed"),
    (body(target="p", columns={"price": {"to": "c", "convert": 3}}),
     "streams.s.tables.catalog_product.columns.price.convert", "converter"),
    (body(target="p", filter=[{"column": "x", "op": "like", "value": 1}]),
     "streams.s.tables.catalog_product.filter[0].op", "eq"),
    (body(target="p", columns={"a": "a"}, drop=["a"]), "streams.s.tables.catalog_product.drop", "both"),
    (body(target="p", new_columns="maybe"), "streams.s.tables.catalog_product.new_columns", "stop"),
    ({"streams": {"s": {"source": {"url": "${NOPE_NOT_SET}"}, "target": {"url": "sqlite:///t"},
                        "tables": {"a": "b"}}}}, "streams.s.source.url", "NOPE_NOT_SET"),
    ({"version": 2, "streams": {}}, "version", "use 1"),
])
def test_bad_files_name_the_key_path(data: Any, path: str, words: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse(data)
    assert err.value.path == path
    assert words in str(err.value)


def test_env_defaults_expand(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SRC_URL", "postgresql://h/db")
    cfg = parse({"streams": {"s": {"source": {"url": "${SRC_URL}"},
                                   "target": {"url": "${TGT_URL_UNSET:-sqlite:///x.db}"},
                                   "tables": {"a": "b"}}}}).stream("s")
    assert (cfg.source_url, cfg.target_url, cfg.slot) == ("postgresql://h/db", "sqlite:///x.db", "strangler_s")


def test_transport_comes_from_the_environment_with_a_default(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = {"source": {"url": "postgresql://h/src"}, "target": {"url": "sqlite:///t.db"}, "tables": {"a": "b"},
            "transport": "${STRANGLER_CDC_TRANSPORT:-direct}"}
    monkeypatch.delenv("STRANGLER_CDC_TRANSPORT", raising=False)
    assert parse({"streams": {"s": spec}}).stream("s").transport == {"kind": "direct"}
    monkeypatch.setenv("STRANGLER_CDC_TRANSPORT", "kafka")
    assert parse({"streams": {"s": spec}}).stream("s").transport == {"kind": "kafka"}
    with pytest.raises(ConfigError) as err:
        parse({"streams": {"s": {**spec, "transport": "${NOPE_NOT_SET}"}}})
    assert err.value.path == "streams.s.transport" and "NOPE_NOT_SET" in str(err.value)


def test_unknown_stream_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="streams: s"):
        parse(body()).stream("nope")


SRC = {"catalog_product": TableSchema(name="catalog_product", columns={
    "id": "integer", "name": "text", "price": "numeric(10,2)", "secret": "text"}, pk=("id",)),
    "audit": TableSchema(name="audit", columns={"at": "timestamp", "msg": "text"}, pk=())}
TGT = {"products": TableSchema(name="products", columns={"id": "INTEGER", "title": "TEXT",
                                                         "price_cents": "BIGINT", "sku": "TEXT"},
                               pk=("id",), unique_sets=(("id",),), required=("sku",)),
       "audit": TableSchema(name="audit", columns={"at": "TIMESTAMP", "msg": "TEXT"}, pk=())}


def test_mapping_is_checked_whole_against_both_schemas() -> None:
    cfg = parse(body(target="products", columns={
        "id": "id", "name": "titel", "price": {"to": "price_cents", "convert": "decimal_to_cent"}})).stream("s")
    with pytest.raises(ConfigError) as err:
        compile_stream(cfg, SRC, TGT)
    msg = str(err.value)
    # every problem at once, each with its key path and what to do
    assert "streams.s.tables.catalog_product.columns: source column 'secret' is neither mapped nor dropped" in msg
    assert "streams.s.tables.catalog_product.columns.name: target table 'products' has no column 'titel'; add it" in msg
    assert "streams.s.tables.catalog_product.columns.price.convert: unknown converter 'decimal_to_cent'" in msg
    assert "products.sku is NOT NULL without a default" in msg


def test_table_without_key_is_refused_with_the_fix() -> None:
    cfg = parse({"streams": {"s": {"source": {"url": "postgresql://h/src"}, "target": {"url": "sqlite:///t"},
                                   "tables": {"audit": "audit"}}}}).stream("s")
    with pytest.raises(ConfigError, match="no primary key.*REPLICA IDENTITY FULL"):
        compile_stream(cfg, SRC, TGT)


def test_compiled_mapping_converts_filters_and_detects_schema_changes() -> None:
    cfg = parse(body(target="products", drop=["secret"], filter={"name": "keep"}, columns={
        "id": "id", "name": "title", "price": {"to": "price_cents", "convert": "decimal_to_cents"}})).stream("s")
    tgt = {"products": TableSchema(name="products", columns=dict(TGT["products"].columns), pk=("id",),
                                   unique_sets=(("id",),))}
    tm = compile_stream(cfg, SRC, tgt)["catalog_product"]
    assert tm.to_target({"id": 1, "name": "keep", "price": Decimal("19.99"), "secret": "x"}) == {
        "id": 1, "title": "keep", "price_cents": 1999}
    assert tm.to_target({"id": 1, "price": None}) == {"id": 1, "price_cents": None}  # absent stays absent
    assert tm.matches({"name": "keep"}) and not tm.matches({"name": "drop"})
    tm.check_relation(dict(SRC["catalog_product"].columns))  # unchanged: fine
    with pytest.raises(SchemaChanged, match="new column 'color'"):
        tm.check_relation({**SRC["catalog_product"].columns, "color": "text"})
    with pytest.raises(SchemaChanged, match="'price' changed type"):
        tm.check_relation({**SRC["catalog_product"].columns, "price": "text"})
    with pytest.raises(SchemaChanged, match="'name' is gone"):
        tm.check_relation({k: v for k, v in SRC["catalog_product"].columns.items() if k != "name"})


def test_lossy_types_need_an_explicit_converter() -> None:
    cfg = parse(body(target="products", drop=["secret"], columns={
        "id": "id", "name": "title", "price": "price_cents"})).stream("s")
    tgt = {"products": TableSchema(name="products", columns=dict(TGT["products"].columns), pk=("id",),
                                   unique_sets=(("id",),))}
    with pytest.raises(ConfigError, match=r"columns\.price: numeric\(10,2\) -> BIGINT needs a conversion.*decimal_to_cents"):
        compile_stream(cfg, SRC, tgt)


def test_new_columns_copy_extends_the_mapping_when_the_target_has_them() -> None:
    cfg = parse(body(target="products", drop=["secret"], new_columns="copy", columns={
        "id": "id", "name": "title", "price": {"to": "price_cents", "convert": "decimal_to_cents"}})).stream("s")
    tgt = {"products": TableSchema(name="products", columns={**TGT["products"].columns, "color": "TEXT"},
                                   pk=("id",), unique_sets=(("id",),))}
    tm = compile_stream(cfg, SRC, tgt)["catalog_product"]
    assert tm.check_relation({**SRC["catalog_product"].columns, "color": "text"}) == ["color"]
    assert tm.to_target({"id": 1, "color": "red"}) == {"id": 1, "color": "red"}
    with pytest.raises(SchemaChanged, match="no column of that name"):
        tm.check_relation({**SRC["catalog_product"].columns, "color": "text", "size": "int"})


def test_a_column_new_columns_accepted_is_followed_again_when_the_stream_restarts() -> None:
    """The source gained `color` while the stream ran and the policy took it; starting the
    stream again compiles against today's table, where `color` is neither mapped nor
    dropped: the policy decides again instead of refusing to start."""
    columns = {"id": "id", "name": "title", "price": {"to": "price_cents", "convert": "decimal_to_cents"}}
    src = {"catalog_product": TableSchema(name="catalog_product", pk=("id",), unique_sets=(("id",),),
                                          columns={**SRC["catalog_product"].columns, "color": "text"})}
    with_color = {"products": TableSchema(name="products", columns={**TGT["products"].columns, "color": "TEXT"},
                                          pk=("id",), unique_sets=(("id",),))}
    without = {"products": TableSchema(name="products", columns=dict(TGT["products"].columns), pk=("id",),
                                       unique_sets=(("id",),))}
    copy = parse(body(target="products", drop=["secret"], new_columns="copy", columns=columns)).stream("s")
    tm = compile_stream(copy, src, with_color)["catalog_product"]
    assert tm.to_target({"id": 1, "color": "red"}) == {"id": 1, "color": "red"}
    with pytest.raises(ConfigError, match="'color' is neither mapped nor dropped, and target table 'products' has "
                                          "no column of that name"):
        compile_stream(copy, src, without)
    ignore = parse(body(target="products", drop=["secret"], new_columns="ignore", columns=columns)).stream("s")
    tm = compile_stream(ignore, src, with_color)["catalog_product"]
    assert "color" in tm.ignored and tm.to_target({"id": 1, "color": "red"}) == {"id": 1}
    default = parse(body(target="products", new_columns="ignore")).stream("s")
    plain = {"catalog_product": TableSchema(name="catalog_product", pk=("id",), unique_sets=(("id",),),
                                            columns={"id": "integer", "name": "text", "color": "text"})}
    named = {"products": TableSchema(name="products", columns={"id": "INTEGER", "name": "TEXT"}, pk=("id",),
                                     unique_sets=(("id",),))}
    assert "color" in compile_stream(default, plain, named)["catalog_product"].ignored
    stop = parse(body(target="products", drop=["secret"], columns=columns)).stream("s")
    with pytest.raises(ConfigError, match="'color' is neither mapped nor dropped; add"):
        compile_stream(stop, src, with_color)


def _two(a: str, b: str, c: str | None = None, **fwd: Any) -> dict[str, Any]:
    streams: dict[str, Any] = {
        "fwd": {"source": {"url": a, **fwd}, "target": {"url": b}, "tables": {"t": "t"}},
        "rev": {"source": {"url": b}, "target": {"url": a}, "tables": {"t": "t"}},
    }
    if c is not None:
        streams["onward"] = {"source": {"url": b}, "target": {"url": c}, "tables": {"t": "t"}}
    return {"streams": streams}


def test_a_source_skips_only_its_reverse_s_writes(tmp_path: Path) -> None:
    """Database identity: host:port/dbname (loopback names alike), SQLite by resolved path."""
    sf = parse(_two("postgresql://u@localhost:5432/mono", "postgresql://other@127.0.0.1/cat",
                    "postgresql://u@localhost/reports"))
    assert sf.stream("fwd").skip_origins == ("rev",)
    assert sf.stream("rev").skip_origins == ("fwd",)
    assert sf.stream("onward").skip_origins == ()  # a chain mono -> cat -> reports carries mono's rows
    assert sf.stream("rev").skip_origin_names == ("strangler_fwd",)
    sf = parse(_two(f"sqlite:///{tmp_path}/a.db", f"sqlite:///{tmp_path}/x/../b.db"))
    assert sf.stream("fwd").skip_origins == ("rev",)
    assert config.database_identity("postgresql://h/a") != config.database_identity("postgresql://h:5433/a")
    assert config.database_identity("postgresql:///a?host=/run/pg") == "postgresql:/run/pg:5432/a"


def test_skip_origins_overrides_the_computed_set() -> None:
    sf = parse(_two("postgresql://h/a", "postgresql://h/b", skip_origins=[]))
    assert sf.stream("fwd").skip_origins == ()
    sf = parse(_two("postgresql://h/a", "postgresql://h/b", skip_origins=["elsewhere"]))
    assert sf.stream("fwd").skip_origins == ("elsewhere",)
    with pytest.raises(ConfigError) as err:
        parse(_two("postgresql://h/a", "postgresql://h/b", skip_origins="rev"))
    assert err.value.path == "streams.fwd.source.skip_origins"


def test_initial_is_copy_or_none() -> None:
    data = body()
    assert parse(data).stream("s").initial == "copy"
    data["streams"]["s"]["initial"] = "none"
    assert parse(data).stream("s").initial == "none"
    data["streams"]["s"]["initial"] = "later"
    with pytest.raises(ConfigError) as err:
        parse(data)
    assert err.value.path == "streams.s.initial" and "none" in str(err.value)


def test_the_repository_reverse_stream_starts_without_a_copy() -> None:
    sf = config.load(REPO / "streams.yaml")
    reverse = sf.stream("catalog_reverse")
    assert reverse.initial == "none"
    assert reverse.skip_origins == ("catalog",) and sf.stream("catalog").skip_origins == ("catalog_reverse",)
    assert reverse.table("products").drop == ("slug", "stock_count")  # the monolith keeps stock
