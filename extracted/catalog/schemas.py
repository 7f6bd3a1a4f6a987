"""JSON shapes: rows out (the monolith's serializers, field for field) and write payloads in.

Out: a product is `{id, name, description, category, category_name, price, stock_count,
is_active, created_at, updated_at}` with `price` a 2-decimal string (from integer cents)
and timestamps in DRF's ISO format (`...Z`). A category is `{id, name, parent, description}`.

In: `product_payload()` validates a create/update body with DRF's rules and messages, so a
client gets the same 400 `{"field": ["message"]}` from either side of the seam.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal, DecimalException
from typing import Any

from extracted.kit.errors import ValidationError

REQUIRED = "This field is required."
NOT_NULL = "This field may not be null."
NOT_BLANK = "This field may not be blank."
TRUE_VALUES = {"t", "T", "y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON", "1", 1}
FALSE_VALUES = {"f", "F", "n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF", "0", 0}
PRICE_MAX_DIGITS = 10
PRICE_PLACES = 2


def price_text(cents: int) -> str:
    """Integer cents as the monolith's decimal string: 1250 -> "12.50"."""
    sign = "-" if cents < 0 else ""
    whole, part = divmod(abs(cents), 100)
    return f"{sign}{whole}.{part:02d}"


def timestamp_text(value: datetime) -> str:
    """DRF's DateTimeField output: ISO 8601 in UTC with a `Z`."""
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def product_out(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "description": row["description"],
        "category": row["category_id"],
        "category_name": row["category_name"],
        "price": price_text(row["price_cents"]),
        "stock_count": row["stock_count"],
        "is_active": bool(row["is_active"]),
        "created_at": timestamp_text(row["created_at"]),
        "updated_at": timestamp_text(row["updated_at"]),
    }


def category_out(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "parent": row["parent_id"],
        "description": row["description"],
    }


def price_change_out(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "old_price": price_text(row["old_price_cents"]),
        "new_price": price_text(row["new_price_cents"]),
        "changed_by": row["changed_by"],
        "changed_at": timestamp_text(row["changed_at"]),
    }


def product_payload(
    data: Any, *, partial: bool, category_exists: Callable[[int], bool]
) -> dict[str, Any]:
    """Validated column values for a product write, or a DRF-style `ValidationError`."""
    if not isinstance(data, dict):
        kind = type(data).__name__
        raise ValidationError({"non_field_errors": [f"Invalid data. Expected a dictionary, but got {kind}."]})
    errors: dict[str, list[str]] = {}
    values: dict[str, Any] = {}

    def field(name: str, required: bool, parse: Callable[[Any], Any], column: str) -> None:
        if name not in data:
            if required and not partial:
                errors[name] = [REQUIRED]
            return
        raw = data[name]
        if raw is None:
            errors[name] = [NOT_NULL]
            return
        try:
            values[column] = parse(raw)
        except ValueError as exc:
            errors[name] = [str(exc)]

    field("name", True, _text(200, blank=False), "name")
    field("description", False, _text(None, blank=True), "description")
    field("category", True, lambda raw: _category(raw, category_exists), "category_id")
    field("price", True, _price_cents, "price_cents")
    field("is_active", False, _boolean, "is_active")
    if errors:
        raise ValidationError(errors)
    return values


def _text(max_length: int | None, *, blank: bool) -> Callable[[Any], str]:
    def parse(raw: Any) -> str:
        if isinstance(raw, bool) or not isinstance(raw, str | int | float):
            raise ValueError("Not a valid string.")
        value = str(raw).strip()
        if value == "" and not blank:
            raise ValueError(NOT_BLANK)
        if "\x00" in value:
            raise ValueError("Null characters are not allowed.")
        if max_length is not None and len(value) > max_length:
            raise ValueError(f"Ensure this field has no more than {max_length} characters.")
        return value

    return parse


def _category(raw: Any, exists: Callable[[int], bool]) -> int:
    if isinstance(raw, bool) or not isinstance(raw, str | int | float):
        raise ValueError(f"Incorrect type. Expected pk value, received {type(raw).__name__}.")
    try:
        key = int(raw)  # Django's reading of a key: int("7") and int(7.9) both work
    except (ValueError, OverflowError):
        raise ValueError(f"Incorrect type. Expected pk value, received {type(raw).__name__}.") from None
    if not exists(key):
        raise ValueError(f'Invalid pk "{raw}" - object does not exist.')
    return key


def _price_cents(raw: Any) -> int:
    text = str(raw).strip()
    if len(text) > 1000:
        raise ValueError("String value too large.")
    try:
        value = Decimal(text)
    except DecimalException:
        raise ValueError("A valid number is required.") from None
    if not value.is_finite():
        raise ValueError("A valid number is required.")
    sign, digit_tuple, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    if exponent >= 0:
        total_digits, decimals = len(digit_tuple) + exponent, 0
    else:
        total_digits, decimals = max(len(digit_tuple), -exponent), -exponent
    whole_digits = total_digits - decimals
    if total_digits > PRICE_MAX_DIGITS:
        raise ValueError(f"Ensure that there are no more than {PRICE_MAX_DIGITS} digits in total.")
    if decimals > PRICE_PLACES:
        raise ValueError(f"Ensure that there are no more than {PRICE_PLACES} decimal places.")
    if whole_digits > PRICE_MAX_DIGITS - PRICE_PLACES:
        raise ValueError(
            f"Ensure that there are no more than {PRICE_MAX_DIGITS - PRICE_PLACES} digits "
            "before the decimal point."
        )
    if value < Decimal("0.01"):
        raise ValueError("Ensure this value is greater than or equal to 0.01.")
    return int(value * 100)


def _boolean(raw: Any) -> bool:
    try:
        if raw in TRUE_VALUES:
            return True
        if raw in FALSE_VALUES:
            return False
    except TypeError:  # unhashable (a list or an object)
        pass
    raise ValueError("Must be a valid boolean.")
