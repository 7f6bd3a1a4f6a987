"""Writes (HackSoft's "services"): staff product create/update/delete, one transaction each.

Names match the monolith (`product_create`, `product_update`, `product_delete`). A price
change also records a `price_changes` row, as the monolith's serializer does. The
service never writes `stock_count`: it is inventory's number, fed here by CDC.

Ids: rows copied by CDC keep the monolith's ids; a row created here takes its id from the
database's own allocator (SQLite AUTOINCREMENT, PostgreSQL the column's sequence), never
from `max(id)+1`, which hands the monolith's next id to both sides. `strangler ids reserve`
points that allocator at the catalog's own block (README: "Ids that never collide").

Deletes: the monolith refuses deleting a product an order line references (a PROTECT
foreign key; tangle T2). The service keeps a CDC-fed read copy of those references
(`order_line_refs`) and refuses the same way while one exists.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, delete, exists, insert, select, update

from extracted.catalog.models import order_line_refs, price_changes, products
from extracted.kit.errors import ValidationError

# The monolith's answer to a delete its PROTECT foreign key refuses (monolith/utils.py:
# shop_exception_handler turns Django's ProtectedError, an IntegrityError, into this 400).
PROTECTED = {"detail": ["This conflicts with existing data."]}


def product_create(conn: Connection, *, values: dict[str, Any]) -> int:
    """Insert a product; its id, from the database's allocator. `values` come from
    `schemas.product_payload`."""
    now = datetime.now(UTC)
    row = {"description": "", "is_active": True, **values, "created_at": now, "updated_at": now}
    new_id = conn.execute(insert(products).values(**row).returning(products.c.id)).scalar_one()
    return int(new_id)


def product_update(
    conn: Connection, *, product_id: int, values: dict[str, Any], changed_by: int | None
) -> bool:
    """Update a product; False when it does not exist."""
    current = conn.execute(
        select(products.c.price_cents).where(products.c.id == product_id).with_for_update()
    ).first()
    if current is None:
        return False
    now = datetime.now(UTC)
    new_price = values.get("price_cents")
    if new_price is not None and new_price != current.price_cents:
        conn.execute(
            insert(price_changes).values(
                product_id=product_id,
                old_price_cents=current.price_cents,
                new_price_cents=new_price,
                changed_by=changed_by,
                changed_at=now,
            )
        )
    conn.execute(update(products).where(products.c.id == product_id).values(**values, updated_at=now))
    return True


def product_delete(conn: Connection, *, product_id: int) -> bool:
    """Delete a product (its price changes go with it); False when it does not exist.

    Refused (`ValidationError`, the monolith's 400 body) while an order line references it."""
    if conn.execute(select(products.c.id).where(products.c.id == product_id).with_for_update()).first() is None:
        return False
    if conn.execute(select(exists().where(order_line_refs.c.product_id == product_id))).scalar():
        raise ValidationError(PROTECTED)
    conn.execute(delete(price_changes).where(price_changes.c.product_id == product_id))
    conn.execute(delete(products).where(products.c.id == product_id))
    return True
