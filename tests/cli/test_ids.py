"""`strangler ids show|reserve` on the shop's files (streams.yaml + ownership.yaml), SQLite."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from extracted.catalog import migrations
from extracted.kit.db import make_engine
from handover.ids import BLOCKS

REPO = Path(__file__).resolve().parents[2]
MONOLITH_TABLES = ("catalog_category", "catalog_product", "catalog_pricehistory")


@pytest.fixture
def shop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The repository's streams.yaml and ownership.yaml over two fresh SQLite databases."""
    for name in ("streams.yaml", "ownership.yaml"):
        shutil.copy(REPO / name, tmp_path / name)
    monolith = tmp_path / "monolith.sqlite3"
    with sqlite3.connect(monolith) as conn:  # Django's SQLite ids: AUTOINCREMENT
        for table in MONOLITH_TABLES:
            conn.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY AUTOINCREMENT, x TEXT)")
            conn.execute(f"INSERT INTO {table} (x) VALUES ('a'), ('b')")
    engine = make_engine(f"sqlite:///{tmp_path / 'catalog.sqlite3'}")
    migrations.upgrade(engine)
    engine.dispose()
    monkeypatch.setenv("MONOLITH_DATABASE_URL", f"sqlite:///{monolith}")
    monkeypatch.setenv("CATALOG_DATABASE_URL", f"sqlite:///{tmp_path / 'catalog.sqlite3'}")
    return tmp_path / "streams.yaml"


def ids(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["ids", *args])
    return result.exit_code, result.stdout, result.stderr


def catalog_sql(streams: Path, sql: str) -> None:
    with sqlite3.connect(streams.with_name("catalog.sqlite3")) as conn:
        conn.execute(sql)


def test_show_says_each_sides_next_id_is_inside_its_block(shop: Path) -> None:
    code, out, _ = ids("show", "--streams", str(shop), "--json")
    assert code == 0, out
    doc = json.loads(out)
    nexts = {(s["side"], t["table"]): t["next_id"] for s in doc["sides"] for t in s["tables"]}
    assert nexts == {**{("monolith", t): 3 for t in MONOLITH_TABLES},
                     **{("catalog", t): BLOCKS["catalog"][0] for t in ("categories", "products", "price_changes")}}
    assert doc["ok"] is True


def test_show_exits_3_with_the_fix_when_an_allocator_left_its_block(shop: Path) -> None:
    catalog_sql(shop, "DELETE FROM sqlite_sequence WHERE name = 'products'")
    code, _, err = ids("show", "--streams", str(shop))
    assert code == 3
    assert "catalog.products: next id 1 is outside the block" in err
    assert "strangler ids reserve --side catalog" in err
    code, out, _ = ids("reserve", "--side", "catalog", "--streams", str(shop), "--json")
    assert code == 0, out
    assert json.loads(out)["tables"]["products"]["next_id"] == BLOCKS["catalog"][0]
    assert ids("show", "--streams", str(shop))[0] == 0


def test_reserve_refuses_a_block_with_rows_beyond_it_and_changes_nothing(shop: Path) -> None:
    code, _, err = ids("reserve", "--side", "catalog", "--start", "100", "--end", "200",
                       "--streams", str(shop))
    assert code == 0, err  # an empty catalog may move to any block ...
    catalog_sql(shop, "INSERT INTO categories (id, name, created_at) VALUES (250, 'x', '2020-01-01 00:00:00')")
    code, _, err = ids("reserve", "--side", "catalog", "--start", "100", "--end", "200",
                       "--streams", str(shop))
    assert code == 1  # ... but not past rows it does not own
    assert "categories.id already has id 250 at or above the block's end 200" in err
    code, out, _ = ids("show", "--streams", str(shop), "--json")
    tables = {t["table"]: t for s in json.loads(out)["sides"] for t in s["tables"]}
    assert tables["products"]["next_id"] == 100  # all or none: products kept its block


@pytest.mark.parametrize(("args", "says"), [
    (["reserve", "--side", "billing"], "no side 'billing'"),
    (["reserve", "--group", "orders"], "no ownership group 'orders'"),
    (["reserve", "--start", "5"], "give both --start and --end"),
])
def test_bad_input_is_exit_2_with_what_to_do(shop: Path, args: list[str], says: str) -> None:
    code, _, err = ids(*args, "--streams", str(shop))
    assert code == 2
    assert says in err


def test_group_and_side_default_to_the_only_group_and_its_service_side(shop: Path) -> None:
    code, out, _ = ids("reserve", "--streams", str(shop), "--json")
    assert code == 0 and json.loads(out)["side"] == "catalog"
    assert json.loads(out)["block"] == list(BLOCKS["catalog"])


def test_with_two_groups_the_group_must_be_named(shop: Path) -> None:
    import yaml

    own = shop.with_name("ownership.yaml")
    doc = yaml.safe_load(own.read_text())
    (name, group), = doc["groups"].items()
    orders = {key: value for key, value in group.items() if key not in ("keeps", "tables")}
    orders["sides"] = {side: {**spec, "tables": [f"{side}_extra"], "stream": f"orders_{side}"} for side, spec in group["sides"].items()}
    doc["groups"]["orders"] = orders
    own.write_text(yaml.safe_dump(doc))
    code, _, err = ids("show", "--streams", str(shop))
    assert code == 2 and f"give --group, one of: {name}, orders" in err
