"""How much data a seed writes (its sizes) and when its rows happened: the leaf the seeding
steps share (seeding.py, seed_orders.py), so neither imports the other's caller."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

EPOCH = datetime(2021, 1, 4, 9, 0, tzinfo=UTC)  # the shop opened on a Monday morning
CHUNK = 5_000


@dataclass(frozen=True, kw_only=True)
class Size:
    categories: int
    products: int
    customers: int
    staff: int
    warehouses: int
    orders: int
    max_lines: int  # lines per order: 1..max_lines, mean (1+max)/2


SIZES: dict[str, Size] = {
    # a test seeds this in about a second
    "small": Size(categories=12, products=200, customers=20, staff=2, warehouses=2,
                  orders=60, max_lines=3),
    # benchmarks: ~10k products
    "medium": Size(categories=60, products=10_000, customers=1_000, staff=5, warehouses=4,
                   orders=10_000, max_lines=5),
    # 100k products, ~1M order lines
    "large": Size(categories=300, products=100_000, customers=20_000, staff=10, warehouses=8,
                  orders=250_500, max_lines=7),
}


class SeedError(Exception):
    """The seed cannot run as asked (unknown size, database already seeded)."""


def size_named(name: str) -> Size:
    try:
        return SIZES[name]
    except KeyError:
        raise SeedError(
            f"unknown size {name!r}; choose one of: {', '.join(SIZES)}"
        ) from None


def chunks(total: int, size: int = CHUNK) -> Iterator[range]:
    for start in range(1, total + 1, size):
        yield range(start, min(start + size, total + 1))


def when(rng: random.Random, *, days: int = 5 * 365) -> datetime:
    return EPOCH + timedelta(seconds=rng.randrange(days * 86_400))
