"""Migration 0002: the catalog's ids come from the database's allocator, inside its block,
on SQLite and real PostgreSQL, for a new database and for one upgraded with data in it."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from sqlalchemy import Engine, insert, select, text

from cdc import ids
from extracted.catalog import create_app, migrations
from extracted.catalog.models import ID_BLOCK, categories, price_changes, products
from extracted.kit.db import make_engine
from tests.extracted.catalog.asgi import asgi_client
from tests.extracted.catalog.conftest import settings_for
from tests.extracted.catalog.test_writes import BODY, NOW, header

TABLES = ("categories", "products", "price_changes")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'catalog.sqlite3'}"
    server = request.getfixturevalue("pg_server")
    return str(server.create_database(f"cat_{uuid.uuid4().hex[:10]}"))


@pytest.fixture
def engine(url: str) -> Engine:
    e = make_engine(url)
    yield e  # type: ignore[misc]
    e.dispose()


def test_a_new_catalog_database_allocates_from_its_block(url: str, engine: Engine) -> None:
    migrations.upgrade(engine)
    for table in TABLES:
        found = ids.describe(url, table)
        assert found.kind in (ids.AUTOINCREMENT, ids.SEQUENCE), table
        assert found.next_id == ID_BLOCK[0], table
        if found.kind == ids.SEQUENCE:
            assert (found.min_value, found.max_value) == (ID_BLOCK[0], ID_BLOCK[1] - 1)
    app = create_app(settings_for(url, migrate_on_start=False), engine=engine)
    with engine.begin() as conn:  # copied by CDC, with the monolith's ids
        conn.execute(insert(categories), [{"id": 1, "name": "Kitchen", "created_at": NOW}])
        conn.execute(insert(products), [{"id": 200, "name": "Mug", "category_id": 1,
                                         "price_cents": 100, "created_at": NOW, "updated_at": NOW}])
    with asgi_client(app) as client:
        made = client.post("/api/products/", json=BODY, headers=header())
        assert made.status_code == 201, made.text
        assert made.json()["id"] == ID_BLOCK[0]
        repriced = client.patch(f"/api/products/{ID_BLOCK[0]}/", json={"price": "1.00"}, headers=header())
        assert repriced.status_code == 200
    with engine.connect() as conn:
        assert conn.execute(select(price_changes.c.id)).scalar_one() == ID_BLOCK[0]


def test_upgrading_a_database_with_rows_keeps_them_and_moves_only_the_allocator(url: str, engine: Engine) -> None:
    migrations.upgrade(engine, "0001")
    with engine.begin() as conn:
        conn.execute(insert(categories), [{"id": 1, "name": "Kitchen", "parent_id": None, "created_at": NOW},
                                          {"id": 2, "name": "Cups", "parent_id": 1, "created_at": NOW}])
        conn.execute(insert(products), [{"id": 7, "name": "Oak Mug", "category_id": 2,
                                         "price_cents": 1250, "created_at": NOW, "updated_at": NOW}])
        conn.execute(insert(price_changes), [{"id": 3, "product_id": 7, "old_price_cents": 1000,
                                              "new_price_cents": 1250, "changed_at": NOW}])
    migrations.upgrade(engine)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT id, slug, parent_id FROM categories ORDER BY id")).all() == [
            (1, "kitchen-1", None), (2, "cups-2", 1)]
        assert conn.execute(text("SELECT id, slug FROM products")).all() == [(7, "oak-mug-7")]
        assert conn.execute(text("SELECT id, product_id FROM price_changes")).all() == [(3, 7)]
    assert [ids.next_id(url, t) for t in TABLES] == [ID_BLOCK[0]] * 3
    with engine.begin() as conn:  # the foreign keys still hold on the new tables
        conn.execute(text("DELETE FROM products WHERE id = 7"))
        assert conn.execute(text("SELECT count(*) FROM price_changes")).scalar() == 0  # cascade
    migrations.downgrade(engine, "0001")
    migrations.upgrade(engine)
    assert migrations.current_revision(engine) == migrations.head_revision()
