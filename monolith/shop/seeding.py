"""Deterministic seed data for the shop, in sizes from "a test in seconds" to "a benchmark".

Same size + same random seed → the same rows with the same ids, on SQLite and PostgreSQL.
Rows are built in memory in chunks and written with ``bulk_create`` with explicit ids;
sequences are reset afterwards so the shop's own inserts continue after the seeded ids.
Every seeded user has the password ``SEED_PASSWORD`` (this is a demo shop).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import User
from django.core.management.color import no_style
from django.db import connection, transaction

from monolith.catalog.models import Category, Product

SEED_PASSWORD = "shop-password"
DEFAULT_RANDOM_SEED = 42
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
                  orders=250_000, max_lines=7),
}


class SeedError(Exception):
    """The seed cannot run as asked (unknown size, database already seeded)."""


ADJECTIVES = [
    "Sturdy", "Classic", "Compact", "Deluxe", "Eco", "Rustic", "Modern", "Vintage", "Smart",
    "Portable", "Premium", "Handmade", "Organic", "Heavy-duty", "Lightweight", "Foldable",
]
MATERIALS = [
    "Oak", "Steel", "Bamboo", "Cotton", "Leather", "Ceramic", "Glass", "Wool", "Copper",
    "Linen", "Walnut", "Aluminium", "Cork", "Marble",
]
NOUNS = [
    "Chair", "Lamp", "Kettle", "Backpack", "Mug", "Blanket", "Desk", "Shelf", "Teapot",
    "Notebook", "Speaker", "Jacket", "Vase", "Skillet", "Clock", "Planter", "Bottle", "Stool",
]
DEPARTMENTS = [
    "Home", "Kitchen", "Outdoor", "Office", "Fashion", "Garden", "Electronics", "Toys",
    "Sports", "Books", "Bath", "Lighting",
]


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


Progress = Callable[[str], None]


class Seeder:
    """Writes one size of data; each ``seed_<context>`` step owns its tables."""

    def __init__(self, *, size: Size, random_seed: int, progress: Progress) -> None:
        self.size = size
        self.rng = random.Random(random_seed)
        self.progress = progress
        self.password_hash = make_password(SEED_PASSWORD)  # one hash for everyone: fast

    def run(self) -> dict[str, int]:
        with transaction.atomic():
            self.seed_users()
            self.seed_catalog()
            for step in self.extra_steps():
                step()
        self.reset_sequences()
        return self.counts()

    def extra_steps(self) -> list[Callable[[], None]]:
        return []

    def seed_users(self) -> None:
        s = self.size
        users = [
            User(id=i, username=f"staff{i}", email=f"staff{i}@shop.example", is_staff=True,
                 password=self.password_hash, date_joined=EPOCH, first_name="Staff",
                 last_name=str(i))
            for i in range(1, s.staff + 1)
        ]
        users += [
            User(id=s.staff + i, username=f"customer{i}", email=f"customer{i}@mail.example",
                 password=self.password_hash, date_joined=when(self.rng),
                 first_name="Customer", last_name=str(i))
            for i in range(1, s.customers + 1)
        ]
        User.objects.bulk_create(users, batch_size=CHUNK)
        self.progress(f"users: {len(users)}")

    def seed_catalog(self) -> None:
        s, rng = self.size, self.rng
        roots = min(len(DEPARTMENTS), s.categories)
        cats = [Category(id=i, name=DEPARTMENTS[i - 1], description=f"All things {DEPARTMENTS[i - 1].lower()}",
                         created_at=EPOCH) for i in range(1, roots + 1)]
        for i in range(roots + 1, s.categories + 1):
            parent = rng.randrange(1, roots + 1)
            cats.append(Category(id=i, name=f"{DEPARTMENTS[parent - 1]} / {rng.choice(NOUNS)}s {i}",
                                 parent_id=parent, created_at=EPOCH))
        Category.objects.bulk_create(cats, batch_size=CHUNK)
        for ids in chunks(s.products):
            batch = []
            for i in ids:
                name = f"{rng.choice(ADJECTIVES)} {rng.choice(MATERIALS)} {rng.choice(NOUNS)}"
                created = when(rng)
                batch.append(Product(
                    id=i, name=name, description=f"{name}, item {i:06d}. Built to last.",
                    category_id=rng.randrange(1, s.categories + 1),
                    price=Decimal(rng.randrange(199, 49_999)) / 100,
                    stock_count=0, is_active=rng.random() > 0.02,
                    created_at=created, updated_at=created,
                ))
            Product.objects.bulk_create(batch, batch_size=CHUNK)
        self.progress(f"catalog: {s.categories} categories, {s.products} products")

    def models(self) -> list:  # type: ignore[type-arg]
        return [User, Category, Product]

    def reset_sequences(self) -> None:
        sql = connection.ops.sequence_reset_sql(no_style(), self.models())
        if sql:
            with connection.cursor() as cur:
                for statement in sql:
                    cur.execute(statement)

    def counts(self) -> dict[str, int]:
        return {m._meta.db_table: m.objects.count() for m in self.models()}


def already_seeded() -> bool:
    return Product.objects.exists() or User.objects.filter(username="customer1").exists()


def wipe(progress: Progress) -> None:
    """Delete every shop row (children first) so a reseed starts from empty tables."""
    with transaction.atomic():
        for model in reversed(Seeder.models(None)):  # type: ignore[arg-type]
            model.objects.all().delete()
    progress("wiped existing shop data")


def seed(size_name: str, *, random_seed: int = DEFAULT_RANDOM_SEED, reset: bool = False,
         progress: Progress = lambda _msg: None) -> dict[str, int]:
    """Seed the database with ``size_name`` data; refuses a seeded database unless ``reset``."""
    size = size_named(size_name)
    if already_seeded():
        if not reset:
            raise SeedError("the database already holds shop data; pass --reset to replace it")
        wipe(progress)
    return Seeder(size=size, random_seed=random_seed, progress=progress).run()
