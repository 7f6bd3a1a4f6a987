"""Query-string parsing for the list endpoints, with the monolith's exact rules.

The monolith answers `?category=&min_price=&max_price=&in_stock=&is_active=&search=&ordering=`
through django-filter, DRF's SearchFilter and OrderingFilter. Clients depend on their
quirks as much as on their features, so this module reproduces them on purpose:

- a value that is not valid for its filter is a 400 `{"<param>": ["<message>"]}`;
  an empty value means "no filter"; the last of repeated parameters wins;
- `in_stock` and `is_active` accept exactly `true` or `false` (anything else is a 400);
- `search` is split on whitespace (quoted phrases kept) and commas; every term must
  match name or description, case-insensitively (ASCII), as `LIKE %term%`;
- `ordering` is a comma list of allowed fields, `-` for descending; unknown fields are
  dropped silently and an empty result falls back to the default (`id`).

Prices are compared in integer cents: `min_price=9.995` means `price_cents >= 1000`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, DecimalException

from starlette.datastructures import QueryParams

from extracted.kit.errors import ValidationError

BOOLEAN_CHOICES = {"true": True, "false": False}
ENTER_A_NUMBER = "Enter a number."
MAX_NUMBER = 1e50  # django-filter's NumberFilter refuses larger values
INVALID_CHOICE = "Select a valid choice. That choice is not one of the available choices."
PRODUCT_ORDERING = ("id", "name", "price", "created_at", "stock_count")
CATEGORY_ORDERING = ("id", "name")
INT_RANGE = (-(2**31), 2**31 - 1)  # the monolith's integer keys


@dataclass(frozen=True, kw_only=True)
class ProductFilters:
    """A validated product list query."""

    category_id: int | None = None
    min_price_cents: int | None = None
    max_price_cents: int | None = None
    in_stock: bool | None = None
    is_active: bool | None = None
    search: tuple[str, ...] = ()
    ordering: tuple[str, ...] = ("id",)


@dataclass(frozen=True, kw_only=True)
class CategoryFilters:
    parent_id: int | None = None
    search: tuple[str, ...] = ()
    ordering: tuple[str, ...] = ("id",)


def product_filters(params: QueryParams, *, category_exists: Callable[[int], bool]) -> ProductFilters:
    """Validated filters, or `ValidationError` with every bad parameter (django-filter's form)."""
    errors: dict[str, list[str]] = {}
    category_id = _choice(params.get("category"), "category", category_exists, errors)
    min_price = _number(params.get("min_price"), "min_price", errors)
    max_price = _number(params.get("max_price"), "max_price", errors)
    in_stock = _boolean_choice(params.get("in_stock"), "in_stock", errors)
    is_active = _boolean_choice(params.get("is_active"), "is_active", errors)
    if errors:
        raise ValidationError(errors)
    return ProductFilters(
        category_id=category_id,
        min_price_cents=None if min_price is None else math.ceil(min_price * 100),
        max_price_cents=None if max_price is None else math.floor(max_price * 100),
        in_stock=in_stock,
        is_active=is_active,
        search=search_terms(params.get("search", "")),
        ordering=ordering(params.get("ordering"), PRODUCT_ORDERING),
    )


def category_filters(params: QueryParams, *, category_exists: Callable[[int], bool]) -> CategoryFilters:
    errors: dict[str, list[str]] = {}
    parent_id = _choice(params.get("parent"), "parent", category_exists, errors)
    if errors:
        raise ValidationError(errors)
    return CategoryFilters(
        parent_id=parent_id,
        search=search_terms(params.get("search", "")),
        ordering=ordering(params.get("ordering"), CATEGORY_ORDERING),
    )


def _choice(
    raw: str | None, name: str, exists: Callable[[int], bool], errors: dict[str, list[str]]
) -> int | None:
    """A ModelChoiceFilter: the id of an existing category, else an error for `name`."""
    if raw is None or raw == "":
        return None
    if "\x00" in raw:
        errors[name] = ["Null characters are not allowed."]
        return None
    key = parse_int(raw)
    if key is None or not exists(key):
        errors[name] = [INVALID_CHOICE]
        return None
    return key


def _boolean_choice(raw: str | None, name: str, errors: dict[str, list[str]]) -> bool | None:
    """A ChoiceFilter over `true`/`false`: empty means no filter, anything else a 400."""
    if raw is None or raw == "":
        return None
    if raw not in BOOLEAN_CHOICES:
        errors[name] = [f"Select a valid choice. {raw} is not one of the available choices."]
        return None
    return BOOLEAN_CHOICES[raw]


def parse_int(raw: str) -> int | None:
    """The monolith's reading of an id: Python's `int()`, within the 32-bit key range."""
    value = parse_id(raw)
    return value if value is not None and INT_RANGE[0] <= value <= INT_RANGE[1] else None


def parse_id(raw: str) -> int | None:
    """Python's `int()` of a path id, or None (the monolith: "Not found." for non-integers)."""
    try:
        return int(raw)
    except ValueError:
        return None


def in_key_range(value: int) -> bool:
    return INT_RANGE[0] <= value <= INT_RANGE[1]


def _number(raw: str | None, name: str, errors: dict[str, list[str]]) -> Decimal | None:
    if raw is None or raw == "":
        return None
    try:
        value = Decimal(raw)
    except DecimalException:
        errors[name] = [ENTER_A_NUMBER]
        return None
    if not value.is_finite():
        errors[name] = [ENTER_A_NUMBER]
        return None
    if value > Decimal(MAX_NUMBER):
        errors[name] = ["Ensure this value is less than or equal to 1e+50."]
        return None
    return value


# Django's smart_split: whitespace-separated words, quoted phrases kept whole.
_SMART_SPLIT = re.compile(
    r"""((?:[^\s'"]*(?:(?:"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')[^\s'"]*)+)|\S+)"""
)


def search_terms(value: str) -> tuple[str, ...]:
    """The monolith's search terms for `?search=` (SearchFilter's smart split)."""
    if "\x00" in value:
        raise ValidationError(["Null characters are not allowed."])
    for char in value:
        if 0xD800 <= ord(char) <= 0xDFFF:
            raise ValidationError([f"Surrogate characters are not allowed: U+{ord(char):X}."])
    terms: list[str] = []
    for match in _SMART_SPLIT.finditer(value):
        term = match.group(0).strip(",")
        if term.startswith(('"', "'")) and term[0] == term[-1]:
            quote = term[0]
            terms.append(term[1:-1].replace("\\" + quote, quote).replace("\\\\", "\\"))
        else:
            terms.extend(sub.strip() for sub in term.split(",") if sub)
    return tuple(terms)


def ordering(raw: str | None, allowed: tuple[str, ...]) -> tuple[str, ...]:
    if raw:
        fields = [part.strip() for part in raw.split(",")]
        valid = tuple(f for f in fields if f.removeprefix("-") in allowed)
        if valid:
            return valid
    return ("id",)
