"""Initial catalog schema: categories, products (cents, slug, stock read copy), price_changes.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Aware timestamps; TEXT in SQLite in Django's format so CDC copies them unchanged.
TIMESTAMP = sa.DateTime(timezone=True).with_variant(sa.String(32), "sqlite")
SLUG = "lower(replace(trim(name), ' ', '-')) || '-' || CAST(id AS TEXT)"


def upgrade() -> None:
    op.create_table(
        "categories",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(120), nullable=False),
        sa.Column("slug", sa.String(200), sa.Computed(SLUG, persisted=True)),
        sa.Column(
            "parent_id",
            sa.Integer(),
            # deferred like Django's: CDC may copy a child before its parent in one transaction
            sa.ForeignKey("categories.id", ondelete="RESTRICT", deferrable=True, initially="DEFERRED"),
            nullable=True,
        ),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
    )
    op.create_index("ix_categories_parent_id", "categories", ["parent_id"])
    op.create_index("ix_categories_name", "categories", ["name"])

    op.create_table(
        "products",
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
    )
    for column in ("category_id", "price_cents", "name", "created_at", "stock_count"):
        op.create_index(f"ix_products_{column}", "products", [column, "id"])

    op.create_table(
        "price_changes",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "product_id",
            sa.Integer(),
            sa.ForeignKey("products.id", ondelete="CASCADE", deferrable=True, initially="DEFERRED"),
            nullable=False,
        ),
        sa.Column("old_price_cents", sa.BigInteger(), nullable=False),
        sa.Column("new_price_cents", sa.BigInteger(), nullable=False),
        sa.Column("changed_by", sa.Integer(), nullable=True),
        sa.Column("changed_at", TIMESTAMP, nullable=False),
    )
    op.create_index("ix_price_changes_product_id", "price_changes", ["product_id"])


def downgrade() -> None:
    op.drop_table("price_changes")
    op.drop_table("products")
    op.drop_table("categories")
