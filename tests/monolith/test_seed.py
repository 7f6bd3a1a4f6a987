"""The seed command: deterministic, sized, refuses what it cannot do."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command

from monolith.catalog.models import Product
from monolith.orders.models import Order, OrderLine
from monolith.shop.seed_sizes import SIZES
from monolith.shop.seeding import seed

pytestmark = pytest.mark.django_db


def snapshot() -> list[tuple]:
    return list(Product.objects.order_by("id").values_list("id", "name", "price", "stock_count",
                                                            "category_id"))


def test_same_seed_same_rows() -> None:
    before = snapshot()
    lines = list(OrderLine.objects.order_by("id").values_list("order_id", "product_id", "quantity"))
    counts = seed("small", reset=True)
    assert snapshot() == before
    assert list(OrderLine.objects.order_by("id").values_list(
        "order_id", "product_id", "quantity")) == lines
    assert counts["catalog_product"] == SIZES["small"].products
    assert counts["orders_order"] == SIZES["small"].orders


def test_other_seed_other_rows() -> None:
    before = snapshot()
    seed("small", reset=True, random_seed=7)
    assert snapshot() != before


def test_new_rows_continue_after_seeded_ids() -> None:
    seed("small", reset=True)
    order = Order.objects.create(user_id=3)
    assert order.id == SIZES["small"].orders + 1


def test_unknown_size_is_refused_with_the_list() -> None:
    with pytest.raises(CommandError, match="unknown size 'huge'; choose one of: small, medium, large"):
        call_command("seed", "--size", "huge")


def test_seeded_database_is_not_seeded_twice() -> None:
    with pytest.raises(CommandError, match="--reset"):
        call_command("seed", "--size", "small")


def test_sizes_are_what_benchmarks_expect() -> None:
    assert SIZES["medium"].products == 10_000
    large = SIZES["large"]
    assert large.products == 100_000
    assert large.orders * (1 + large.max_lines) / 2 >= 1_000_000  # ~1M order lines
