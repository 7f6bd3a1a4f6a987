"""Deterministic seed data for the shop, in sizes from "a test in seconds" to "a benchmark".

Same size + same random seed → the same rows with the same ids, on SQLite and PostgreSQL.
Rows are built in memory in chunks and written with ``bulk_create`` with explicit ids;
sequences are reset afterwards so the shop's own inserts continue after the seeded ids.
Every seeded user has the password ``SEED_PASSWORD`` (this is a demo shop).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from decimal import Decimal

from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import User
from django.core.management.color import no_style
from django.db import connection, transaction
from rest_framework.authtoken.models import Token

from monolith.catalog.models import Category, PriceHistory, Product
from monolith.customers.models import Address, Profile
from monolith.inventory.models import Reservation, StockLevel, Warehouse
from monolith.notifications.models import OutboxEmail
from monolith.orders.models import Cart, CartItem, Order, OrderLine
from monolith.payments.models import PaymentAttempt, Refund
from monolith.shipping.models import Shipment
from monolith.shop.seed_orders import seed_orders
from monolith.shop.seed_sizes import CHUNK, EPOCH, SeedError, Size, chunks, size_named, when

SEED_PASSWORD = "shop-password"
DEFAULT_RANDOM_SEED = 42


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
CITIES = ["Berlin", "Hamburg", "Munich", "Cologne", "Leipzig", "Dresden", "Bremen", "Essen"]
STREETS = ["Hauptstrasse", "Bahnhofstrasse", "Gartenweg", "Lindenallee", "Schulstrasse"]
DEPARTMENTS = [
    "Home", "Kitchen", "Outdoor", "Office", "Fashion", "Garden", "Electronics", "Toys",
    "Sports", "Books", "Bath", "Lighting",
]


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
            self.seed_customers()
            self.seed_inventory()
            seed_orders(self)
        self.reset_sequences()
        return self.counts()

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
        self.prices: list[Decimal] = [Decimal(0)]  # index = product id
        self.names: list[str] = [""]
        # (product id, warehouse id, quantity), written by seed_inventory
        self.stock_plan: list[tuple[int, int, int]] = []
        for ids in chunks(s.products):
            batch = []
            for i in ids:
                name = f"{rng.choice(ADJECTIVES)} {rng.choice(MATERIALS)} {rng.choice(NOUNS)}"
                created = when(rng)
                homes = {1 + i % s.warehouses}
                if rng.random() < 0.25:
                    homes.add(rng.randrange(1, s.warehouses + 1))
                stock = 0
                for w in sorted(homes):
                    qty = rng.randrange(0, 40) if rng.random() < 0.03 else rng.randrange(200, 2000)
                    self.stock_plan.append((i, w, qty))
                    stock += qty
                batch.append(Product(
                    id=i, name=name, description=f"{name}, item {i:06d}. Built to last.",
                    category_id=rng.randrange(1, s.categories + 1),
                    price=self.price_for(rng),
                    # the denormalised copy of inventory's stock the catalog lists (T4)
                    stock_count=stock, is_active=rng.random() > 0.02,
                    created_at=created, updated_at=created,
                ))
            Product.objects.bulk_create(batch, batch_size=CHUNK)
            self.prices.extend(p.price for p in batch)
            self.names.extend(p.name for p in batch)
        self.progress(f"catalog: {s.categories} categories, {s.products} products")

    @staticmethod
    def price_for(rng: random.Random) -> Decimal:
        return Decimal(rng.randrange(199, 49_999)) / 100

    def seed_customers(self) -> None:
        s, rng = self.size, self.rng
        profiles: list[Profile] = []
        addresses: list[Address] = []
        for i in range(1, s.customers + 1):
            uid = s.staff + i
            profiles.append(Profile(id=i, user_id=uid, phone=f"+49 30 {rng.randrange(10**6, 10**7)}",
                                    marketing_opt_in=rng.random() < 0.3, created_at=EPOCH))
            for n in range(1 + (rng.random() < 0.25)):
                addresses.append(Address(
                    id=len(addresses) + 1, user_id=uid, label="home" if n == 0 else "work",
                    line1=f"{rng.choice(STREETS)} {rng.randrange(1, 200)}",
                    city=rng.choice(CITIES), postcode=f"{rng.randrange(10000, 99999)}",
                    country="DE", is_default=n == 0))
        Profile.objects.bulk_create(profiles, batch_size=CHUNK)
        Address.objects.bulk_create(addresses, batch_size=CHUNK)
        # orders pick an address per user: first address id per user id
        self.address_of = {a.user_id: a.id for a in reversed(addresses)}
        self.progress(f"customers: {len(profiles)} profiles, {len(addresses)} addresses")

    def seed_inventory(self) -> None:
        s = self.size
        Warehouse.objects.bulk_create([
            Warehouse(id=w, code=f"WH{w}", name=f"{CITIES[w % len(CITIES)]} warehouse",
                      city=CITIES[w % len(CITIES)]) for w in range(1, s.warehouses + 1)])
        level_id = 0
        for start in range(0, len(self.stock_plan), CHUNK):
            levels = []
            for pid, w, qty in self.stock_plan[start:start + CHUNK]:
                level_id += 1
                levels.append(StockLevel(id=level_id, warehouse_id=w, product_id=pid,
                                         quantity=qty, reserved=0))
            StockLevel.objects.bulk_create(levels, batch_size=CHUNK)
        self.progress(f"inventory: {s.warehouses} warehouses, {level_id} stock levels")

    def models(self) -> list:  # type: ignore[type-arg]
        """Every seeded table, parents before children."""
        return MODELS

    def reset_sequences(self) -> None:
        sql = connection.ops.sequence_reset_sql(no_style(), self.models())
        if sql:
            with connection.cursor() as cur:
                for statement in sql:
                    cur.execute(statement)

    def counts(self) -> dict[str, int]:
        return {m._meta.db_table: m.objects.count() for m in self.models()}


MODELS = [User, Category, Product, PriceHistory, Profile, Address, Warehouse, StockLevel,
          Cart, CartItem, Order, OrderLine, Reservation, PaymentAttempt, Refund, Shipment,
          OutboxEmail]


def already_seeded() -> bool:
    return Product.objects.exists() or User.objects.filter(username="customer1").exists()


def wipe(progress: Progress) -> None:
    """Delete every shop row (children first) so a reseed starts from empty tables."""
    with transaction.atomic():
        Token.objects.all().delete()
        for model in reversed(MODELS):
            model.objects.all()._raw_delete(model.objects.db)  # no signals, no cascades in Python
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
