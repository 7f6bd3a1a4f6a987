"""The catalog service's own schema (SQLAlchemy Core tables; Alembic evolves them).

Deliberately not a copy of the monolith's tables:

| monolith (`catalog_*`)            | service                      | why |
|-----------------------------------|------------------------------|-----|
| `catalog_category`                | `categories` (+ `slug`)      | own names; slug for storefront URLs |
| `catalog_product.price` decimal   | `products.price_cents` int   | money as integer cents: exact, fast to compare and sort |
| `catalog_product.stock_count`     | `products.stock_count`       | **read copy**: owned by inventory, fed by CDC, never written here |
| (none)                            | `products.slug` (generated)  | derived in the database, so CDC-fed rows and service writes both get one |

Ids are the monolith's ids (CDC copies them), so `/api/products/<id>/` means the same
product on both sides of the seam. Rows the service creates take their id from the
database's allocator (SQLite AUTOINCREMENT, PostgreSQL the serial's sequence), which
`strangler ids reserve` points at the catalog's own block (README: "Ids that never collide"). Timestamps are stored the way the monolith stores them
(text in SQLite, `timestamptz` in PostgreSQL) so CDC copies them unchanged.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Computed,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    true,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeEngine

metadata = MetaData()

# The ids this service allocates, half-open: the monolith keeps those below (README "Ids that
# never collide"). Migration 0002 starts every allocator here; `strangler ids` reads it.
ID_BLOCK = (1_000_000_000, 2_000_000_000)


class UTCDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime; TEXT `YYYY-MM-DD HH:MM:SS[.ffffff]` in SQLite (Django's format)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(32))
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        if isinstance(value, str):
            value = parse_datetime(value)
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        if dialect.name == "sqlite":
            return str(value.astimezone(UTC).replace(tzinfo=None))
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            return parse_datetime(value)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC) if value.utcoffset() else value


def parse_datetime(text: str) -> datetime:
    """Django/PostgreSQL/ISO text to an aware UTC datetime (naive text means UTC)."""
    parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


# A portable slug: lower-case name, spaces to dashes, made unique by the id.
_SLUG_SQL = "lower(replace(trim(name), ' ', '-')) || '-' || CAST(id AS TEXT)"

categories = Table(
    "categories",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(120), nullable=False),
    Column("slug", String(200), Computed(_SLUG_SQL, persisted=True)),
    Column("parent_id", Integer, ForeignKey("categories.id", ondelete="RESTRICT", deferrable=True, initially="DEFERRED"), nullable=True),
    Column("description", Text, nullable=False, server_default=""),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_categories_parent_id", "parent_id"),
    Index("ix_categories_name", "name"),
    sqlite_autoincrement=True,
)

products = Table(
    "products",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("slug", String(260), Computed(_SLUG_SQL, persisted=True)),
    Column("description", Text, nullable=False, server_default=""),
    # No FK to categories: CDC may deliver a product before its category within a batch.
    Column("category_id", Integer, nullable=False),
    Column("price_cents", BigInteger, nullable=False),
    # Read copy of inventory's number (see README: "Data the catalog does not own").
    Column("stock_count", Integer, nullable=False, server_default="0"),
    Column("is_active", Boolean, nullable=False, server_default=true()),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    # Keyset-friendly: every ordering the API offers has an index ending in the id.
    Index("ix_products_category_id", "category_id", "id"),
    Index("ix_products_price_cents", "price_cents", "id"),
    Index("ix_products_name", "name", "id"),
    Index("ix_products_created_at", "created_at", "id"),
    Index("ix_products_stock_count", "stock_count", "id"),
    sqlite_autoincrement=True,
)

price_changes = Table(
    "price_changes",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("product_id", Integer, ForeignKey("products.id", ondelete="CASCADE", deferrable=True, initially="DEFERRED"), nullable=False),
    Column("old_price_cents", BigInteger, nullable=False),
    Column("new_price_cents", BigInteger, nullable=False),
    # The user lives in the monolith's auth tables: an id from the identity header, no FK.
    Column("changed_by", Integer, nullable=True),
    Column("changed_at", UTCDateTime, nullable=False),
    Index("ix_price_changes_product_id", "product_id"),
    sqlite_autoincrement=True,
)

# Read copy of the monolith's order lines, reduced to the product each one points at (the
# `catalog` stream drops every other column). The monolith's PROTECT foreign key refuses
# deleting a product an order references; the service answers the same while a row here
# names the product. Written by CDC only.
order_line_refs = Table(
    "order_line_refs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("product_id", Integer, nullable=False),
    Index("ix_order_line_refs_product_id", "product_id"),
)
