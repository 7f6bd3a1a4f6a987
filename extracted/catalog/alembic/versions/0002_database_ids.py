"""Ids from the database's own allocator; `order_line_refs`, a read copy of which products orders reference.

SQLite: `categories`, `products` and `price_changes` are recreated as INTEGER PRIMARY KEY
AUTOINCREMENT, so their allocator is a row in `sqlite_sequence` that can be set (a reserved
block, `strangler ids reserve`) and never hands out an id twice, even after a delete.
Without AUTOINCREMENT SQLite picks max(rowid)+1, which nobody can move. SQLite cannot
ALTER a column into AUTOINCREMENT: new table, copy, drop, rename (the new tables' foreign
keys name the new tables; the rename rewrites them). PostgreSQL: the ids are already
`serial` columns with an owned sequence.

Both: the allocators start at the catalog's block, [1_000_000_000, 2_000_000_000)
(`models.ID_BLOCK`; README "Ids that never collide"), so a fresh catalog database never
hands out an id the monolith may also take; PostgreSQL's sequences are bounded to the
block (an exhausted block fails loudly instead of colliding). An allocator already past
the block's start is left where it is.

`order_line_refs(id, product_id)`: the monolith's order lines reduced to the product they
point at, fed by the `catalog` stream (streams.yaml); the service refuses to delete a product
an order line references, as the monolith's PROTECT foreign key does.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TIMESTAMP = sa.DateTime(timezone=True).with_variant(sa.String(32), "sqlite")
SLUG = "lower(replace(trim(name), ' ', '-')) || '-' || CAST(id AS TEXT)"
TABLES = ("categories", "products", "price_changes")  # parents first
BLOCK = (1_000_000_000, 2_000_000_000)  # models.ID_BLOCK when this was written; frozen here


def _columns(table: str, refs: str) -> list[sa.Column]:  # type: ignore[type-arg]
    """The 0001 columns of `table`; foreign keys point at the `refs`-suffixed tables."""
    if table == "categories":
        return [
            sa.Column("id", sa.Integer(), primary_key=True),
            sa.Column("name", sa.String(120), nullable=False),
            sa.Column("slug", sa.String(200), sa.Computed(SLUG, persisted=True)),
            sa.Column("parent_id", sa.Integer(), sa.ForeignKey(
                f"categories{refs}.id", ondelete="RESTRICT", deferrable=True, initially="DEFERRED"),
                nullable=True),
            sa.Column("description", sa.Text(), server_default="", nullable=False),
            sa.Column("created_at", TIMESTAMP, nullable=False),
        ]
    if table == "products":
        return [
            sa.Column("id", sa.Integer(), primary_key=True),
            sa.Column("name", sa.String(200), nullable=False),
            sa.Column("slug", sa.String(260), sa.Computed(SLUG, persisted=True)),
            sa.Column("description", sa.Text(), server_default="", nullable=False),
            sa.Column("category_id", sa.Integer(), nullable=False),
            sa.Column("price_cents", sa.BigInteger(), nullable=False),
            sa.Column("stock_count", sa.Integer(), server_default="0", nullable=False),
            sa.Column("is_active", sa.Boolean(), server_default=sa.true(), nullable=False),
            sa.Column("created_at", TIMESTAMP, nullable=False),
            sa.Column("updated_at", TIMESTAMP, nullable=False),
        ]
    return [
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("product_id", sa.Integer(), sa.ForeignKey(
            f"products{refs}.id", ondelete="CASCADE", deferrable=True, initially="DEFERRED"),
            nullable=False),
        sa.Column("old_price_cents", sa.BigInteger(), nullable=False),
        sa.Column("new_price_cents", sa.BigInteger(), nullable=False),
        sa.Column("changed_by", sa.Integer(), nullable=True),
        sa.Column("changed_at", TIMESTAMP, nullable=False),
    ]


def _indexes() -> None:
    op.create_index("ix_categories_parent_id", "categories", ["parent_id"])
    op.create_index("ix_categories_name", "categories", ["name"])
    for column in ("category_id", "price_cents", "name", "created_at", "stock_count"):
        op.create_index(f"ix_products_{column}", "products", [column, "id"])
    op.create_index("ix_price_changes_product_id", "price_changes", ["product_id"])


def _recreate(*, autoincrement: bool) -> None:
    """SQLite: copy the three tables into new ones with (or without) AUTOINCREMENT."""
    for table in TABLES:
        op.create_table(f"{table}__new", *_columns(table, "__new"), sqlite_autoincrement=autoincrement)
        names = ", ".join(c.name for c in _columns(table, "") if c.computed is None)
        op.execute(f"INSERT INTO {table}__new ({names}) SELECT {names} FROM {table}")
    # children first; the self-reference is cut so dropping categories trips no RESTRICT
    op.execute("DROP TABLE price_changes")
    op.execute("DROP TABLE products")
    op.execute("UPDATE categories SET parent_id = NULL")
    op.execute("DROP TABLE categories")
    for table in TABLES:
        op.rename_table(f"{table}__new", table)
    _indexes()


def _into_block() -> None:
    """Point each table's allocator at the block's start (never backwards)."""
    conn = op.get_bind()
    start, end = BLOCK
    for table in TABLES:
        top = conn.execute(sa.text(f"SELECT max(id) FROM {table}")).scalar() or 0
        if conn.dialect.name == "sqlite":
            seq = conn.execute(sa.text("SELECT max(seq) FROM sqlite_sequence WHERE name = :t"),
                               {"t": table}).scalar() or 0
            conn.execute(sa.text("DELETE FROM sqlite_sequence WHERE name = :t"), {"t": table})
            conn.execute(sa.text("INSERT INTO sqlite_sequence (name, seq) VALUES (:t, :s)"),
                         {"t": table, "s": max(seq, top, start - 1)})
            continue
        seq_name = conn.execute(sa.text("SELECT pg_get_serial_sequence(:t, 'id')"), {"t": table}).scalar()
        last, called = conn.execute(sa.text(f"SELECT last_value, is_called FROM {seq_name}")).one()
        upcoming = max(int(last) + 1 if called else int(last), top + 1, start)
        if upcoming < end:
            op.execute(f"ALTER SEQUENCE {seq_name} MINVALUE {start} MAXVALUE {end - 1} "
                       f"START WITH {start} RESTART WITH {upcoming}")


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _recreate(autoincrement=True)
    _into_block()
    op.create_table(
        "order_line_refs",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("product_id", sa.Integer(), nullable=False),
    )
    op.create_index("ix_order_line_refs_product_id", "order_line_refs", ["product_id"])


def downgrade() -> None:
    op.drop_table("order_line_refs")
    if op.get_bind().dialect.name == "sqlite":
        _recreate(autoincrement=False)
