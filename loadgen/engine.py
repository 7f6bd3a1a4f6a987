"""The traffic generator behind `strangler traffic`: realistic, continuous load, per endpoint.

Virtual users — anonymous visitors, logged-in customers (session cookie + CSRF, like a
browser) and staff (API token, like a back-office script) — each with their own cookies,
browse, search, open product pages, fill carts, place orders, read their order history and
edit prices. Requests start at a fixed rate (open loop, capped by ``concurrency`` in flight)
for a duration or until stopped. Every request is recorded (loadgen/report.py); any
4xx/5xx or missing answer is a failure, listed with its status and body excerpt.

Many cohorts, as a canary needs: the router hashes a visitor's session cookie, else its
anonymous cohort cookie. ``anonymous`` visitors browse at once, each for 1..``visit_requests``
requests, then a new visitor takes the place with a cohort cookie of its own (the router's
key format, from the seeded RNG); a customer's session ends after 1..``session_requests`` of
its requests and the customer logs in again from a fresh browser (a new session, so a new
cohort) while the old session's requests in flight finish on it. So a step of a few percent
sees its share of the requests instead of all or nothing, and the same seed gives the same
visitors and sessions on every run.

    run_traffic(TrafficConfig(base_url="http://127.0.0.1:8080", rate=20, duration=30))
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import httpx

from loadgen.report import Failure, Recorder, excerpt

SEED_PASSWORD = "shop-password"  # what `python -m monolith seed` gives every user
COHORT_COOKIE = "strangler_cohort"  # the router's default anonymous cohort cookie
SEARCH_WORDS = ["oak", "chair", "lamp", "steel", "mug", "vintage", "eco", "kettle", "wool"]


HOLD_RETRIES = 30  # a held write is retried this often (each after its Retry-After)


def held_for(response: httpx.Response) -> float | None:
    """Seconds to wait when the router held a write during an ownership flip, else None."""
    if response.status_code != 503 or "retry-after" not in response.headers:
        return None
    try:
        if response.json().get("error") != "writes_held":
            return None
        return min(5.0, max(0.05, float(response.headers["retry-after"])))
    except ValueError:
        return None


class TrafficError(Exception):
    """The run could not start: shop unreachable, not a shop, or a login refused."""

    exit_code = 1


@dataclass(frozen=True, kw_only=True)
class TrafficConfig:
    base_url: str
    rate: float = 20.0  # requests started per second, all users together (one per action)
    duration: float = 30.0  # seconds; 0 = until stopped
    anonymous: int = 8  # visitors browsing at once; each leaves after a short visit
    customers: int = 4
    staff: int = 1
    password: str = SEED_PASSWORD
    concurrency: int = 32
    timeout: float = 10.0
    seed: int = 1
    # share of actions that are staff writes (price edits, 1 in 5 a new product); None:
    # the natural mix (about 1.5% price edits)
    staff_writes: float | None = None
    # the router's cookie for visitors without a session (routes.yaml `anonymous_cohort`)
    cohort_cookie: str = COHORT_COOKIE
    # Short visits and sessions, so a 1% step meets new cohorts often: at 20 req/s the first
    # candidate request comes after ~8 s (median), near the ~6 s of a new cohort per request.
    visit_requests: int = 2  # an anonymous visit is 1..this many requests
    session_requests: int = 4  # a customer's session is 1..this many requests; 0: never ends

    def __post_init__(self) -> None:
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"base URL {self.base_url!r} is not http(s)://host[:port]; "
                             "give the shop's address, e.g. http://127.0.0.1:8000")
        if not 0 < self.rate <= 10_000:
            raise ValueError(f"rate {self.rate} must be between 0 (exclusive) and 10000 requests/s")
        if self.duration < 0:
            raise ValueError(f"duration {self.duration} must be >= 0 seconds (0 = until stopped)")
        if min(self.anonymous, self.customers, self.staff) < 0:
            raise ValueError("user counts must be >= 0")
        if self.anonymous + self.customers + self.staff == 0:
            raise ValueError("no users: give at least one of --anonymous, --customers, --staff")
        if not 1 <= self.concurrency <= 1000:
            raise ValueError(f"concurrency {self.concurrency} must be between 1 and 1000")
        if self.timeout <= 0:
            raise ValueError(f"timeout {self.timeout} must be > 0 seconds")
        if self.staff_writes is not None and not 0 <= self.staff_writes <= 1:
            raise ValueError(f"staff writes share {self.staff_writes} must be between 0 and 1")
        if self.session_requests < 0:
            raise ValueError(f"session length {self.session_requests} must be >= 0 (0 = never ends)")
        if self.visit_requests < 1:
            raise ValueError(f"visit length {self.visit_requests} must be >= 1 request")
        if not self.cohort_cookie or not self.cohort_cookie.isascii() or any(
                c in self.cohort_cookie for c in ' ;=,"'):
            raise ValueError(f"cohort cookie name {self.cohort_cookie!r} is not a cookie name")
        if self.staff_writes and not self.staff:
            raise ValueError("--staff-writes needs at least one staff user (--staff)")


@dataclass
class User:
    name: str
    kind: str  # anonymous | customer | staff
    client: httpx.AsyncClient
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one cart write at a time
    cart_items: int = 0
    visit_left: int = 0  # anonymous: requests until this visitor leaves; customer: session
    cohort: str | None = None  # anonymous: the visitor's cohort cookie, sent with each request

    def headers_for(self, method: str, cohort_cookie: str) -> dict[str, str]:
        if self.cohort is not None:  # the visitor's own cookie, never another's from the jar
            return {"Cookie": f"{cohort_cookie}={self.cohort}"}
        # Logged-in browsers echo the CSRF cookie on writes (Django's session CSRF check).
        if method != "GET" and self.kind == "customer":
            token = self.client.cookies.get("csrftoken")
            return {"X-CSRFToken": token} if token else {}
        return {}


@dataclass
class Shop:
    """What the generator learned about the shop before starting."""

    products: list[dict[str, Any]]
    buyable: list[int]
    categories: list[int]
    pages: int


class Traffic:
    def __init__(self, config: TrafficConfig, stop: threading.Event | None = None, *,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.config = config
        self.transport = transport  # tests: an in-process shop
        self.stop = stop or threading.Event()
        self.rng = random.Random(config.seed)
        # Who does what next, and who comes and goes, is drawn in the driver's loop from an
        # RNG of its own, so the users and cohorts of a run do not depend on the order the
        # requests' tasks happen to run in (their own details come from `rng`).
        self.plan = random.Random(f"plan-{config.seed}")
        self.retired: set[httpx.AsyncClient] = set()  # ended sessions' browsers, not closed yet
        self.closing: set[asyncio.Task[None]] = set()
        self.recorder = Recorder()
        self.users: list[User] = []
        self.started = time.monotonic()
        self.elapsed = 0.0
        self.setup_requests = 0
        self.visitors = 0  # anonymous visitors so far (each a cohort of its own)
        self.sessions = 0  # customer sessions so far
        self.actions: list[tuple[str, float, Callable[[User], Awaitable[None]]]] = [
            # (who may do it, weight, action)
            ("any", 20, self.browse), ("any", 10, self.search), ("any", 8, self.filter),
            ("any", 20, self.product), ("any", 4, self.categories),
            ("any", 5, self.storefront), ("any", 7, self.product_page),
            ("customer", 6, self.add_to_cart), ("customer", 3, self.view_cart),
            ("customer", 5, self.checkout),
            ("customer", 6, self.order_history), ("customer", 3, self.whoami),
            ("staff", 1.5, self.staff_edit),
        ]

    # -- plumbing ----------------------------------------------------------------------
    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.config.base_url, timeout=self.config.timeout,
                                 follow_redirects=False, transport=self.transport,
                                 limits=httpx.Limits(max_connections=self.config.concurrency))

    async def call(self, user: User, endpoint: str, method: str, url: str,
                   **kwargs: Any) -> httpx.Response | None:
        t0 = time.perf_counter()
        failure = None
        response = None
        try:
            for attempt in range(HOLD_RETRIES + 1):
                response = await user.client.request(method, url, headers=user.headers_for(method, self.config.cohort_cookie),
                                                     **kwargs)
                wait = held_for(response)
                if wait is None or attempt == HOLD_RETRIES or self.stop.is_set():
                    break
                # A write held while its tables change owner (`strangler own`): the router
                # answered 503 + Retry-After and did not forward it, so sending it again is safe.
                self.recorder.held += 1
                await asyncio.sleep(wait)
            assert response is not None
            if response.status_code >= 400:
                failure = Failure(endpoint, url, response.status_code, excerpt(response.text),
                                  time.monotonic() - self.started, user.name)
        except httpx.HTTPError as exc:
            failure = Failure(endpoint, url, 0, excerpt(f"{type(exc).__name__}: {exc}"),
                              time.monotonic() - self.started, user.name)
        self.recorder.record(endpoint, (time.perf_counter() - t0) * 1000, failure)
        return response if failure is None else None

    # -- setup -------------------------------------------------------------------------
    async def discover(self) -> Shop:
        probe = self.client()
        url = "/api/products/?page_size=100&is_active=true&ordering=-stock_count"
        try:
            response = await probe.get(url)
            cats = await probe.get("/api/categories/?page_size=100")
        except httpx.HTTPError as exc:
            raise TrafficError(f"cannot reach the shop at {self.config.base_url}: "
                               f"{type(exc).__name__}: {exc or 'no answer'}") from exc
        finally:
            await probe.aclose()
        if response.status_code != 200 or "results" not in response.text:
            raise TrafficError(f"{self.config.base_url} does not look like the shop: GET {url} "
                               f"answered {response.status_code}: {excerpt(response.text)}")
        body = response.json()
        products = body["results"]
        if not products:
            raise TrafficError("the shop has no products; seed it first (python -m monolith seed)")
        buyable = [p["id"] for p in products if p["stock_count"] >= 50] or [products[0]["id"]]
        categories = [c["id"] for c in cats.json().get("results", [])] if cats.status_code == 200 else []
        return Shop(products=products, buyable=buyable, categories=categories,
                    pages=max(1, min(50, body["count"] // 20)))

    async def login(self, kind: str, index: int) -> User:
        username = f"{kind}{index}"
        user = User(name=username, kind=kind, client=self.client())
        response = await self.call(user, "POST /api/auth/login/", "POST", "/api/auth/login/",
                                   json={"username": username, "password": self.config.password})
        if response is None:
            await user.client.aclose()
            raise TrafficError(f"cannot log in as {username}: "
                               f"{self.recorder.failures[-1].status} {self.recorder.failures[-1].body}")
        if kind == "staff":  # back-office scripts use the API token, not the browser session
            user.client.cookies.clear()
            user.client.headers["Authorization"] = f"Token {response.json()['token']}"
        else:
            self.sessions += 1
            user.visit_left = self.session_length()
        return user

    def session_length(self) -> int:
        n = self.config.session_requests
        return self.plan.randint(1, n) if n else -1

    async def relogin(self, user: User) -> None:
        """The customer's session ended: log in again from a fresh browser (a new cohort)."""
        fresh = User(name=user.name, kind=user.kind, client=self.client())
        signed_in = await self.call(fresh, "POST /api/auth/login/", "POST", "/api/auth/login/",
                                    json={"username": user.name, "password": self.config.password})
        if signed_in is None:  # recorded as a failure; the old session goes on
            await fresh.client.aclose()
            return
        self.sessions += 1
        old, user.client = user.client, fresh.client
        self.retired.add(old)
        task = asyncio.create_task(self.retire(old))
        self.closing.add(task)
        task.add_done_callback(self.closing.discard)

    async def retire(self, client: httpx.AsyncClient) -> None:
        await asyncio.sleep(self.config.timeout)  # what is still in flight on it ends by then
        self.retired.discard(client)
        await client.aclose()

    async def setup(self) -> None:
        self.shop = await self.discover()
        self.users = [self.new_visitor(self.client()) for _ in range(self.config.anonymous)]
        for kind, count in (("customer", self.config.customers), ("staff", self.config.staff)):
            for i in range(1, count + 1):
                self.users.append(await self.login(kind, i))
        self.setup_requests = self.recorder.requests

    def new_visitor(self, client: httpx.AsyncClient) -> User:
        """The next anonymous visitor (on a connection pool shared with the one it replaces)."""
        self.visitors += 1
        return User(name=f"anonymous{self.visitors}", kind="anonymous", client=client,
                    visit_left=self.plan.randint(1, self.config.visit_requests),
                    # the router's own key format (router/proxy.py), from the seeded RNG
                    cohort=f"{self.plan.getrandbits(64):016x}")

    # -- the mix -------------------------------------------------------------------------
    def pick(self) -> tuple[User, Callable[[User], Awaitable[None]]]:
        user, action = self._pick()
        if user.kind == "anonymous":
            if user.visit_left <= 0:  # this visitor left; the next one comes in
                place = self.users.index(user)
                user = self.users[place] = self.new_visitor(user.client)
            user.visit_left -= 1
        elif user.kind == "customer" and user.visit_left >= 0:
            if user.visit_left == 0:
                user.visit_left = self.session_length()
                return user, self.relogin
            user.visit_left -= 1
        return user, action

    def _pick(self) -> tuple[User, Callable[[User], Awaitable[None]]]:
        kinds = {u.kind for u in self.users}
        choices = [(who, w, act) for who, w, act in self.actions if who == "any" or who in kinds]
        share = self.config.staff_writes
        if share is not None:  # a steady share of staff writes, the rest from the other actions
            choices = [c for c in choices if c[0] != "staff"]
            if self.plan.random() < share or not choices:
                write = self.staff_create if self.plan.random() < 0.2 else self.staff_edit
                return self.plan.choice([u for u in self.users if u.kind == "staff"]), write
        who, _, action = self.plan.choices(choices, weights=[w for _, w, _ in choices])[0]
        users = self.users if who == "any" else [u for u in self.users if u.kind == who]
        return self.plan.choice(users), action

    def any_product(self) -> int:
        return int(self.rng.choice(self.shop.products)["id"])

    async def browse(self, user: User) -> None:
        await self.call(user, "GET /api/products/", "GET",
                        f"/api/products/?page={self.rng.randint(1, self.shop.pages)}")

    async def search(self, user: User) -> None:
        await self.call(user, "GET /api/products/?search", "GET",
                        f"/api/products/?search={self.rng.choice(SEARCH_WORDS)}")

    async def filter(self, user: User) -> None:
        low = self.rng.choice([0, 10, 50, 100])
        query = f"min_price={low}&max_price={low + self.rng.choice([50, 200, 1000])}&ordering=-price"
        if self.shop.categories:
            query += f"&category={self.rng.choice(self.shop.categories)}"
        await self.call(user, "GET /api/products/?filter", "GET", f"/api/products/?{query}")

    async def product(self, user: User) -> None:
        await self.call(user, "GET /api/products/{id}/", "GET", f"/api/products/{self.any_product()}/")

    async def categories(self, user: User) -> None:
        await self.call(user, "GET /api/categories/", "GET", "/api/categories/")

    async def storefront(self, user: User) -> None:
        await self.call(user, "GET / (html)", "GET", "/")

    async def product_page(self, user: User) -> None:
        await self.call(user, "GET /products/{id}/ (html)", "GET", f"/products/{self.any_product()}/")

    async def add_to_cart(self, user: User) -> None:
        async with user.lock:
            await self._add(user)

    async def _add(self, user: User) -> None:
        added = await self.call(user, "POST /api/cart/items/", "POST", "/api/cart/items/",
                                json={"product": self.rng.choice(self.shop.buyable),
                                      "quantity": self.rng.randint(1, 2)})
        if added is not None:
            user.cart_items += 1

    async def view_cart(self, user: User) -> None:
        await self.call(user, "GET /api/cart/", "GET", "/api/cart/")

    async def checkout(self, user: User) -> None:
        """Place the cart as an order; with an empty cart, fill it first (next time: buy)."""
        async with user.lock:  # checked under the lock: two checkouts never race on one cart
            if not user.cart_items:
                return await self._add(user)
            placed = await self.call(user, "POST /api/orders/", "POST", "/api/orders/", json={})
            if placed is not None:
                user.cart_items = 0

    async def order_history(self, user: User) -> None:
        await self.call(user, "GET /api/orders/", "GET", "/api/orders/")

    async def whoami(self, user: User) -> None:
        await self.call(user, "GET /api/whoami/", "GET", "/api/whoami/")

    async def staff_edit(self, user: User) -> None:
        product = self.rng.choice(self.shop.products)
        base = Decimal(str(product["price"]))
        price = max(Decimal("1.00"), base + Decimal(self.rng.randint(-100, 100)) / 100)
        await self.call(user, "PATCH /api/products/{id}/", "PATCH", f"/api/products/{product['id']}/",
                        json={"price": f"{price:.2f}"})

    async def staff_create(self, user: User) -> None:
        """A new product (the side that owns the catalog gives it an id from its range)."""
        body = {"name": f"traffic product {self.rng.randrange(10**9)}", "description": "",
                "price": f"{Decimal(self.rng.randint(100, 20000)) / 100:.2f}",
                "category": self.rng.choice(self.shop.categories or [1])}
        created = await self.call(user, "POST /api/products/", "POST", "/api/products/", json=body)
        if created is not None:  # later edits may pick it
            self.shop.products.append(created.json())

    # -- the loop ------------------------------------------------------------------------
    async def drive(self) -> None:
        cfg = self.config
        slots = asyncio.Semaphore(cfg.concurrency)
        tasks: set[asyncio.Task[None]] = set()

        async def one(user: User, action: Callable[[User], Awaitable[None]]) -> None:
            try:
                await action(user)
            finally:
                slots.release()

        self.started = start = time.monotonic()
        deadline = start + cfg.duration if cfg.duration else float("inf")
        interval, n = 1.0 / cfg.rate, 0
        while not self.stop.is_set():
            due = start + n * interval
            if due >= deadline:
                break
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(min(delay, 0.25))
                continue
            await slots.acquire()  # back-pressure: never more than `concurrency` in flight
            user, action = self.pick()
            task = asyncio.create_task(one(user, action))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            n += 1
        if tasks:
            await asyncio.wait(tasks, timeout=cfg.timeout + 1)
        self.elapsed = time.monotonic() - start

    async def run(self) -> dict[str, Any]:
        try:
            await self.setup()
            await self.drive()
        finally:
            for task in list(self.closing):
                task.cancel()
            for client in [*(u.client for u in self.users), *self.retired]:
                await client.aclose()
        counts = {kind: sum(u.kind == kind for u in self.users)
                  for kind in ("anonymous", "customer", "staff")}
        summary = self.recorder.summary(base_url=self.config.base_url, elapsed_s=self.elapsed,
                                        rate=self.config.rate, users=counts,
                                        setup_requests=self.setup_requests)
        summary["anonymous_visitors"] = self.visitors
        summary["customer_sessions"] = self.sessions
        return summary


def run_traffic(config: TrafficConfig, stop: threading.Event | None = None) -> dict[str, Any]:
    """Drive the shop; the summary dict (see loadgen/report.py). Raises TrafficError.

    ``stop`` ends the run early from another thread (the walkthrough runs traffic
    alongside its steps).
    """
    return asyncio.run(Traffic(config, stop).run())
