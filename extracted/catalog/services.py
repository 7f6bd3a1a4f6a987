"""Writes (HackSoft's "services"): staff product create/update/delete, one transaction each.

Names match the monolith (`product_create`, `product_update`, `product_delete`). A price
change also records a `price_changes` row, as the monolith's serializer does. The
service never writes `stock_count`: it is inventory's number, fed here by CDC.

Ids: while the monolith still owns writes, ids come from it through CDC. A service-side
insert takes the next id after the largest one present so it
cannot collide with a copied row; making the two sides' ranges disjoint for good is the
job of migration step 4.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, update

from extracted.catalog.models import price_changes, products


def product_create(conn: Connection, *, values: dict[str, Any]) -> int:
    """Insert a product; its id. `values` come from `schemas.product_payload`.

    Two concurrent creates may pick the same id: one gets `IntegrityError` and the caller
    retries it in a fresh transaction (see `routes.product_create`).
    """
    now = datetime.now(UTC)
    row = {"description": "", "is_active": True, **values, "created_at": now, "updated_at": now}
    next_id = conn.execute(select(func.coalesce(func.max(products.c.id), 0) + 1)).scalar_one()
    conn.execute(insert(products).values(id=next_id, **row))
    return int(next_id)


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
    """Delete a product (its price changes go with it); False when it does not exist."""
    conn.execute(delete(price_changes).where(price_changes.c.product_id == product_id))
    result = conn.execute(delete(products).where(products.c.id == product_id))
    return result.rowcount > 0
