"""Several endpoints per upstream (router/targets.py, router/health.py): balance over the
healthy ones, a breaker each, active health checks — over real sockets, with one real
router process and real upstream processes that are killed and started again."""

from __future__ import annotations

from collections import Counter

import httpx
import pytest

from devstack import free_port
from router import health
from router.config import ConfigError, parse_config
from tests.router.conftest import Upstream, eventually


def _config(c1: Upstream, c2: Upstream, upstream_extra: str = "") -> str:
    return f"""
ledger: ledger.jsonl
access_log: access.log
upstreams:
  c:
    url: ["{c1.url}", "{c2.url}"]
    {upstream_extra}
routes:
  - name: all
    match: {{prefix: /}}
    backends: {{c: 100}}
"""


def _served_by(client: httpx.Client, n: int, method: str = "GET") -> Counter[str]:
    seen: Counter[str] = Counter()
    for i in range(n):
        r = client.request(method, f"/item/{i}")
        assert r.status_code == 200, (method, r.status_code, r.text)  # not one request fails
        seen[r.json()["upstream"]] += 1
    return seen


@pytest.fixture
def pair():  # type: ignore[no-untyped-def]
    c1, c2 = Upstream("c1", free_port()).start(), Upstream("c2", free_port()).start()
    try:
        yield c1, c2
    finally:
        c1.stop()
        c2.stop()


@pytest.mark.slow
def test_a_dead_endpoint_is_checked_out_and_back_in_without_a_failed_request(pair, start_router) -> None:
    c1, c2 = pair
    # A breaker that never opens here: only the health check may take c2 out.
    router = start_router(_config(c1, c2, "health: {path: /healthz, interval: 0.1, timeout: 0.1, "
                                          "fall: 2, rise: 2}\n    breaker: {failures: 1000, min_requests: 1000}"))
    key2 = f"c@127.0.0.1:{c2.port}"

    def healthy(key: str) -> bool:
        return all(w["healthy"] for w in router.status()["breakers"][key]["workers"])

    with router.client() as client:
        assert set(_served_by(client, 20)) == {"c1", "c2"}  # round-robin over both
        c2.stop()
        # Before the check notices: pooled connections to c2 are dead, a new one is refused;
        # each idempotent request goes to c1 instead, and so does a POST (nothing was sent).
        assert set(_served_by(client, 10)) == {"c1"}
        assert set(_served_by(client, 4, "POST")) == {"c1"}
        assert eventually(lambda: not healthy(key2), timeout=5)
        errors = router.status()["routes"]["all"]["backends"]["c"]["errors"].get("connect", 0)
        assert set(_served_by(client, 20)) == {"c1"}
        # Out of the balance: no request tries c2 any more.
        assert router.status()["routes"]["all"]["backends"]["c"]["errors"].get("connect", 0) == errors
        c2.start()
        assert eventually(lambda: healthy(key2), timeout=5)
        assert _served_by(client, 20)["c2"] >= 9  # used again
    log = router.log.read_text()
    assert f"{key2} failed 2 health checks (/healthz): taken out" in log
    assert f"{key2} passed 2 health checks: back in the balance" in log


@pytest.mark.slow
def test_each_endpoint_has_its_own_breaker(pair, start_router) -> None:
    c1, c2 = pair
    router = start_router(_config(c1, c2, "breaker: {failures: 2, open_for: 30}"))
    key1, key2 = f"c@127.0.0.1:{c1.port}", f"c@127.0.0.1:{c2.port}"
    with router.client() as client:
        _served_by(client, 4)
        c2.stop()
        assert set(_served_by(client, 12)) == {"c1"}
        breakers = router.status()["breakers"]
        assert breakers[key2]["state"] == "open"  # c2's failures opened c2's breaker...
        assert breakers[key1]["state"] == "closed"  # ...and not c1's
        assert breakers["c"]["state"] == "closed"  # the upstream still serves
        assert router.status()["routes"]["all"]["backends"]["c"]["breaker"] == "closed"
        errors = router.status()["routes"]["all"]["backends"]["c"]["errors"]
        assert errors.get("connect", 0) == 2  # then c2 is skipped while open
        c1.stop()
        r = client.get("/item/x")  # c1 refuses, c2's breaker is open: nothing left
        assert r.status_code == 502 and r.json()["upstream"] == "c"


def test_one_url_stays_one_endpoint_and_lists_are_checked() -> None:
    def parse(url: str, extra: str = "") -> object:
        return parse_config(f"upstreams:\n  c: {{url: {url}{extra}}}\nroutes:\n  - name: r\n"
                            f"    match: {{prefix: /}}\n    backends: {{c: 100}}\n")

    one = parse('"http://127.0.0.1:8001"').upstreams["c"]  # type: ignore[attr-defined]
    assert [e.authority for e in one.endpoints] == ["127.0.0.1:8001"] and one.health is None
    two = parse('["http://10.0.0.1:80", "http://10.0.0.2"]', ", health: {}").upstreams["c"]  # type: ignore[attr-defined]
    assert [e.authority for e in two.endpoints] == ["10.0.0.1:80", "10.0.0.2:80"]
    assert (two.health.path, two.health.interval, two.health.fall, two.health.rise) == ("/healthz", 2.0, 3, 2)
    assert two.authority == "10.0.0.1:80"  # the one-URL view names the first
    for url, extra, says in [
        ('["http://a:1", "https://b:2"]', "", "is https:// but"),
        ('["http://a:1", "http://a:1/"]', "", "names a:1 twice"),
        ("[]", "", "upstreams.c.url: [] should be non-empty"),
        ('["http://a:1", "ftp://b"]', "", "upstreams.c.url[1]: 'ftp://b' does not match"),
        ('"ftp://a"', "", "upstreams.c.url: 'ftp://a' does not match"),
        ('["http://a:1"]', ", health: {interval: 1, timeout: 2}", "timeout 2 is longer than interval 1"),
        ('["http://a:1"]', ", health: {every: 1}", "allowed here: fall, interval, path, rise, timeout"),
        ('["http://a:x"]', "", "bad port"),
    ]:
        with pytest.raises(ConfigError) as caught:
            parse(url, extra)
        assert says in str(caught.value), str(caught.value)


def test_a_reload_keeps_unchanged_endpoints_and_retires_the_dropped_one() -> None:
    import asyncio

    from router.state import build_snapshot

    def config(urls: str, health: str = ", health: {interval: 5, timeout: 1}") -> object:
        return parse_config(f"upstreams:\n  c: {{url: {urls}{health}}}\nroutes:\n  - name: r\n"
                            f"    match: {{prefix: /}}\n    backends: {{c: 100}}\n")

    async def run() -> None:
        three = build_snapshot(config('["http://127.0.0.1:1", "http://127.0.0.1:2", "http://127.0.0.1:3"]'))  # type: ignore[arg-type]
        t1, t2, t3 = three.groups["c"].targets
        assert all(t.checker is not None for t in (t1, t2, t3))
        two = build_snapshot(config('["http://127.0.0.1:1", "http://127.0.0.1:3"]'), three)  # type: ignore[arg-type]
        assert two.groups["c"].targets == [t1, t3]  # same pools, breakers, health and checks
        assert t2.checker is None and t2.pool.retired  # the dropped one: stopped and closed
        unchecked = build_snapshot(config('["http://127.0.0.1:1", "http://127.0.0.1:3"]', ""), two)  # type: ignore[arg-type]
        assert unchecked.groups["c"].targets == [t1, t3] and t1.checker is None and t1.healthy
        for target in unchecked.targets():
            target.pool.close()

    asyncio.run(run())


def test_a_url_that_becomes_a_list_keeps_its_endpoints_pool_breaker_and_check() -> None:
    """`url: X` → `url: [X, Y]` changes X's key ("c" → "c@host:port"), not its endpoint: the
    reload carries X's pool, breaker and running health check over under the new key."""
    import asyncio

    from router.state import build_snapshot

    def config(urls: str) -> object:
        return parse_config(f"upstreams:\n  c: {{url: {urls}, health: {{interval: 5, timeout: 1}}}}\n"
                            "routes:\n  - name: r\n    match: {prefix: /}\n    backends: {c: 100}\n")

    async def run() -> None:
        one = build_snapshot(config('"http://127.0.0.1:1"'))  # type: ignore[arg-type]
        (only,) = one.groups["c"].targets
        breaker, checker = only.breaker, only.checker
        assert only.key == "c"
        two = build_snapshot(config('["http://127.0.0.1:1", "http://127.0.0.1:2"]'), one)  # type: ignore[arg-type]
        first, second = two.groups["c"].targets
        assert first is only and first.breaker is breaker and first.checker is checker
        assert first.key == first.pool.name == "c@127.0.0.1:1" and not first.pool.retired
        assert second.key == "c@127.0.0.1:2"
        back = build_snapshot(config('"http://127.0.0.1:1"'), two)  # type: ignore[arg-type]
        assert back.groups["c"].targets == [only] and only.key == "c" and second.pool.retired
        for target in back.targets():
            health.stop(target)
            target.pool.close()

    asyncio.run(run())
