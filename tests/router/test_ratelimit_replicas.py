"""Rate limits shared by router replicas through a real Redis (issue 15: `rate_limit_store`).

Two router processes on one routes file play two replicas behind a load balancer: without the
store each would allow the burst; with it, the burst is allowed once across both. Redis is
killed mid-run: requests keep being answered from each replica's own buckets (or 503 with
`on_error: refuse`), the outage is counted and logged, and the sharing comes back with Redis.
No test asserts a duration: the refill is 1/h, so the test's own time adds no token.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from devstack.redis import RedisServer
from router.config import ConfigError, parse_config
from router.sharedbuckets import KEY_PREFIX, RedisBuckets, SharedStore
from tests.router.conftest import eventually
from tests.router.test_ratelimit import ask

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


def routes(upstream: str, redis_url: str, *, on_error: str = "local") -> str:
    return f"""
upstreams:
  a: {{url: "{upstream}"}}
rate_limit_store: {{redis: "{redis_url}", timeout: 0.5, on_error: {on_error}, retry_after: 0.2}}
routes:
  - name: limited
    match: {{prefix: /limited}}
    backends: {{a: 100}}
    rate_limit: {{rate: 1/h, burst: 3}}
  - name: open
    match: {{prefix: /}}
    backends: {{a: 100}}
"""


def flush(redis: RedisServer) -> None:
    async def run() -> None:
        import redis.asyncio as client

        conn = client.Redis.from_url(redis.url)
        await conn.flushdb()
        await conn.aclose()
    asyncio.run(run())


def test_two_replicas_allow_the_burst_once_between_them(redis, upstreams, start_router) -> None:
    flush(redis)
    text = routes(upstreams["a"].url, redis.url)
    first, second = start_router(text), start_router(text)
    statuses = [ask(router)[0] for router in (first, second) * 4]  # a load balancer's round robin
    assert statuses.count(200) == 3 and statuses.count(429) == 5, statuses
    # the bucket's state is Redis's, keyed by route and client, with a TTL of one full refill
    status, head, _ = ask(first)
    assert status == 429 and head["ratelimit"].startswith('"limited";r=0;t=')
    assert ask(second, source="127.0.0.2")[0] == 200  # another client: its own shared bucket
    assert ask(first, "/other")[0] == 200  # a route without a limit never asks Redis


def test_redis_down_falls_back_to_each_replicas_buckets_counted_and_logged(
        redis, upstreams, start_router) -> None:
    flush(redis)
    text = routes(upstreams["a"].url, redis.url)
    first, second = start_router(text), start_router(text)
    redis.halt()
    try:
        # each replica now limits alone: its own burst of 3, not a shared one
        statuses = [ask(router, source="127.0.0.3")[0] for router in (first, second) * 4]
        assert statuses.count(200) == 6 and statuses.count(429) == 2, statuses
        metrics = first.admin("metrics").text
        errors = [line for line in metrics.splitlines()
                  if line.startswith("strangler_rate_limit_store_errors_total ")]
        assert errors and int(errors[0].split()[1]) >= 1
        assert eventually(lambda: "rate_limit_store redis://127.0.0.1" in first.log.read_text())
        assert "this machine's buckets" in first.log.read_text()
    finally:
        redis.resume()
    flush(redis)
    # Redis is back (and empty, like a restarted cache): after retry_after the replicas share again
    def shared_again() -> bool:
        flush(redis)
        return [ask(router, source="127.0.0.4")[0] for router in (first, second) * 2] == [200, 200, 200, 429]
    assert eventually(shared_again, timeout=10, interval=0.3)


def test_on_error_refuse_answers_503_with_retry_after(redis, upstreams, start_router) -> None:
    router = start_router(routes(upstreams["a"].url, redis.url, on_error="refuse"))
    redis.halt()
    try:
        status, head, body = ask(router, source="127.0.0.5")
        assert status == 503 and head["retry-after"] == "1" and b"rate_limit_store_down" in body
        assert ask(router, "/other")[0] == 200  # routes without a limit do not depend on Redis
    finally:
        redis.resume()


def test_the_script_keeps_the_bucket_in_redis_with_a_ttl_of_one_refill(redis) -> None:
    flush(redis)

    async def run() -> tuple[list[bool], int, dict[bytes, bytes]]:
        import redis.asyncio as client

        buckets = RedisBuckets(SharedStore(redis=redis.url, timeout=1.0))
        verdicts = [await buckets.take(b"r\x00k", 0.5, 2) for _ in range(3)]  # 30/min, burst 2
        conn = client.Redis.from_url(redis.url)
        ttl = await conn.pttl(KEY_PREFIX + b"r\x00k")
        held = await conn.hgetall(KEY_PREFIX + b"r\x00k")
        await conn.aclose()
        await buckets.close()
        assert all(v is not None for v in verdicts)
        assert verdicts[2] is not None and 0 < verdicts[2].retry_after <= 2.0
        return [v.allowed for v in verdicts if v is not None], ttl, held

    allowed, ttl, held = asyncio.run(run())
    assert allowed == [True, True, False]
    assert 0 < ttl <= 2 / 0.5 * 1000 + 1000  # a full refill plus a second
    assert float(held[b"tokens"]) < 1.0


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


def test_an_unreachable_store_costs_one_attempt_per_retry_after() -> None:
    from devstack.ports import free_port

    clock, lines = Clock(), []
    buckets = RedisBuckets(SharedStore(redis=f"redis://user:secret@127.0.0.1:{free_port()}/0", timeout=0.2,
                                       retry_after=5.0), clock=clock, log=lines.append)

    async def run() -> None:
        assert await buckets.take(b"k", 1.0, 1) is None
        assert buckets.errors == 1
        clock.now += 4.9
        assert await buckets.take(b"k", 1.0, 1) is None
        assert buckets.errors == 1  # not asked again within retry_after
        clock.now += 0.2
        assert await buckets.take(b"k", 1.0, 1) is None
        assert buckets.errors == 2
        await buckets.close()

    asyncio.run(run())
    assert len(lines) == 1 and "secret" not in lines[0] and "***@127.0.0.1" in lines[0]


@pytest.mark.parametrize(("block", "words"), [
    ('{redis: "http://cache:6379"}', "is not a Redis URL"),
    ('{redis: "redis://cache:6379", timeout: 30}', "greater than the maximum of 5"),
    ('{redis: "redis://cache:6379", on_error: ignore}', "on_error"),
    ('{timeout: 0.1}', "redis"),
])
def test_bad_rate_limit_stores_are_refused_naming_the_key(block: str, words: str) -> None:
    text = f"""
upstreams: {{a: {{url: "http://127.0.0.1:1"}}}}
rate_limit_store: {block}
routes:
  - {{name: r, match: {{prefix: /}}, backends: {{a: 100}}}}
"""
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    assert "rate_limit_store" in str(caught.value) and words in str(caught.value)


def test_a_store_is_optional_and_read_whole() -> None:
    config = parse_config("""
upstreams: {a: {url: "http://127.0.0.1:1"}}
rate_limit_store: {redis: "rediss://u:p@cache:6380/2", timeout: 0.02, on_error: refuse}
routes:
  - {name: r, match: {prefix: /}, backends: {a: 100}}
""")
    assert config.rate_limit_store == SharedStore(redis="rediss://u:p@cache:6380/2", timeout=0.02,
                                                  on_error="refuse", retry_after=1.0)
    assert parse_config("""
upstreams: {a: {url: "http://127.0.0.1:1"}}
routes:
  - {name: r, match: {prefix: /}, backends: {a: 100}}
""").rate_limit_store is None


class HeldStore:
    """A replica store that answers only when the test lets it (a slow Redis, in process)."""

    def __init__(self, settings: SharedStore) -> None:
        self.settings, self.errors, self.calls = settings, 0, 0
        self.entered, self.release = asyncio.Event(), asyncio.Event()

    async def take(self, key: bytes, rate: float, burst: int):  # type: ignore[no-untyped-def]
        from router.ratelimit import Verdict

        self.calls += 1
        self.entered.set()
        await self.release.wait()
        return Verdict(True, burst - 1, 0.0, 1 / rate)

    async def close(self) -> None:
        pass


def test_a_reload_while_redis_answers_routes_the_request_on_the_new_config(tmp_path, upstreams) -> None:
    """The wait for Redis is the only await before a route's owner and weights are applied: a
    config installed meanwhile is the one the request follows (write ownership is decided with
    no await between the decision and its admission count)."""
    import httpx

    from router.proxy import Router

    def config(a: int, b: int):  # type: ignore[no-untyped-def]
        return parse_config(f"""
upstreams:
  a: {{url: "{upstreams['a'].url}"}}
  b: {{url: "{upstreams['b'].url}"}}
rate_limit_store: {{redis: "redis://127.0.0.1:1/0"}}
access_log: false
ledger: {tmp_path / 'ledger.jsonl'}
routes:
  - {{name: r, match: {{prefix: /}}, backends: {{a: {a}, b: {b}}}, rate_limit: {{rate: 1/h, burst: 3}}}}
""")

    first, second = config(100, 0), config(0, 100)

    async def run() -> tuple[str, int]:
        router = Router(config=first)
        await router.startup()
        held = HeldStore(first.rate_limit_store)  # type: ignore[arg-type]
        router.replicas = held  # type: ignore[assignment]
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=router), base_url="http://t") as c:
            request = asyncio.create_task(c.get("/x"))
            await held.entered.wait()
            router.install(second)  # b takes all the traffic while Redis is asked
            held.release.set()
            response = await request
        await router.shutdown()
        return response.headers["x-strangler-backend"], held.calls

    backend, calls = asyncio.run(run())
    assert backend == "b"
    assert calls == 1  # one token for the request, not one per config it saw
