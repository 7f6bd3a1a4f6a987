"""Rate limits (issue 15): the bucket math on an injected clock, and 429s over raw sockets on
both HTTP servers, one worker and two. No test asserts a duration: refill is slow (1/h) so the
test's own time cannot add a token, and the unit tests move a fake clock."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest

from router.config import ConfigError, parse_config
from router.metrics import merge
from router.ratelimit import BucketTable, Limiter, RateLimit, headers, policy
from tests.router.conftest import RouterProc, eventually
from tests.router.test_server_lean import read_response


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- the bucket math ---------------------------------------------------------------------

def test_a_bucket_allows_its_burst_then_one_token_per_refill_interval() -> None:
    clock = Clock()
    table = BucketTable(clock=clock)
    verdicts = [table.take(b"k", 1.0, 3) for _ in range(4)]  # 1/s, burst 3
    assert [v.allowed for v in verdicts] == [True, True, True, False]
    assert [v.remaining for v in verdicts] == [2, 1, 0, 0]
    assert verdicts[-1].retry_after == pytest.approx(1.0) and verdicts[-1].full_in == pytest.approx(3.0)
    clock.now += 0.5
    half = table.take(b"k", 1.0, 3)
    assert not half.allowed and half.retry_after == pytest.approx(0.5)
    clock.now += 0.5
    assert table.take(b"k", 1.0, 3).allowed  # one whole token refilled
    clock.now += 3600
    assert table.take(b"k", 1.0, 3).remaining == 2  # never more than the burst
    assert table.take(b"other", 1.0, 3).remaining == 2  # another key has its own bucket


def test_a_clock_read_before_the_last_update_refills_nothing() -> None:
    clock = Clock()
    table = BucketTable(clock=clock)
    assert table.take(b"k", 1.0, 1).allowed
    clock.now -= 5  # another worker read the time first and took the lock later
    assert not table.take(b"k", 1.0, 1).allowed


def test_two_workers_mapping_one_file_share_the_buckets(tmp_path: Path) -> None:
    clock = Clock()
    first = BucketTable(tmp_path / "t", clock=clock)
    second = BucketTable(tmp_path / "t", clock=clock)  # a second worker's mapping
    allowed = [table.take(b"k", 0.001, 4).allowed for table in (first, second) * 4]
    assert allowed.count(True) == 4  # not 4 per worker


def test_a_full_group_gives_the_slot_touched_longest_ago_to_a_new_key() -> None:
    clock = Clock()
    table = BucketTable(groups=1, clock=clock)  # one group of 4 slots
    for key in (b"a", b"b", b"c", b"d"):
        clock.now += 1
        table.take(key, 0.001, 2)
    table.take(b"b", 0.001, 2)
    assert table.take(b"e", 0.001, 2).remaining == 1  # took a's slot (touched longest ago)
    assert table.take(b"b", 0.001, 2).allowed is False  # b kept its (empty) bucket
    assert table.take(b"a", 0.001, 2).remaining == 1  # a comes back with a fresh burst


def test_headers_follow_the_ietf_draft_and_say_when_to_retry() -> None:
    limit = RateLimit(rate=0.5, burst=3, key="address", spec="30/min", policy=policy("api", 0.5, 3))
    table = BucketTable(clock=Clock())
    limiter = Limiter(table)
    ok = dict(headers("api", limit, limiter.check("api", limit, "1.2.3.4")))
    assert ok == {b"ratelimit-policy": b'"api";q=3;w=6', b"ratelimit": b'"api";r=2;t=2'}
    for _ in range(2):
        limiter.check("api", limit, "1.2.3.4")
    refused = dict(headers("api", limit, limiter.check("api", limit, "1.2.3.4")))
    assert refused[b"ratelimit"] == b'"api";r=0;t=6' and refused[b"retry-after"] == b"2"


def test_rate_limited_counts_are_summed_over_workers() -> None:
    snap = {"series": [], "shadow": {}, "breakers": {}}
    agg = merge([{**snap, "rate_limited": {"api": 2}}, {**snap, "rate_limited": {"api": 3}}, snap])
    assert agg["rate_limited"] == {"api": 5}


# --- configuration -----------------------------------------------------------------------

BASE = "upstreams:\n  a: {url: 'http://127.0.0.1:1'}\n"


def test_rate_limit_config_and_the_router_wide_default() -> None:
    config = parse_config(BASE + "rate_limit: {rate: 600/min, burst: 20}\nroutes:\n"
                          "  - {name: own, match: {prefix: /o}, backends: {a: 100},\n"
                          "     rate_limit: {rate: 1/h, burst: 3, key: 'header:X-Api-Key'}}\n"
                          "  - {name: default, match: {prefix: /d}, backends: {a: 100}}\n"
                          "  - {name: unlimited, match: {prefix: /}, backends: {a: 100}, rate_limit: false}\n")
    own, default, unlimited = config.routes
    assert own.rate_limit is not None and (own.rate_limit.burst, own.rate_limit.key) == (3, "header")
    assert own.rate_limit.header == b"x-api-key" and own.rate_limit.rate == pytest.approx(1 / 3600)
    assert default.rate_limit is not None and default.rate_limit.rate == 10.0
    assert default.rate_limit.policy == b'"default";q=20;w=2'
    assert unlimited.rate_limit is None


@pytest.mark.parametrize("limit, key, words", [
    ("{rate: 10/day}", "routes[0].rate_limit.rate", "10/s, 600/min"),
    ("{rate: 0/s}", "routes[0].rate_limit.rate", "10/s, 600/min"),
    ("{rate: 10}", "routes[0].rate_limit.rate", "10/s"),
    ("{rate: 1/s, burst: 0}", "routes[0].rate_limit.burst", "minimum"),
    ("{rate: 1/s, key: ip}", "routes[0].rate_limit.key", "header:<Name>"),
    ("{rate: 1/s, key: 'header:'}", "routes[0].rate_limit.key", "header:X-Api-Key"),
    ("{rate: 1/s, key: user}", "routes[0].rate_limit.key", "cohort"),
    ("true", "routes[0].rate_limit", "false for none"),
    ("{burst: 2}", "routes[0].rate_limit", "add the missing key"),
])
def test_bad_rate_limits_are_refused_with_key_and_fix(limit: str, key: str, words: str) -> None:
    text = BASE + f"routes:\n  - {{name: r, match: {{prefix: /}}, backends: {{a: 100}}, rate_limit: {limit}}}\n"
    with pytest.raises(ConfigError) as info:
        parse_config(text, source="routes.yaml")
    assert info.value.key_path == key and words in str(info.value) and "fix:" in str(info.value)


# --- over raw sockets --------------------------------------------------------------------

def routes(url: str, key: str = "address") -> str:
    return f"""
ledger: ledger.jsonl
access_log: false
upstreams:
  a: {{url: "{url}"}}
routes:
  - name: limited
    match: {{prefix: /limited}}
    backends: {{a: 100}}
    rate_limit: {{rate: 1/h, burst: 3, key: "{key}"}}
  - name: open
    match: {{prefix: /}}
    backends: {{a: 100}}
"""


def ask(router: RouterProc, path: str = "/limited/x", *, source: str = "127.0.0.1",
        extra: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    """One request on a new connection from `source` (any 127.x address is loopback)."""
    with socket.create_connection(("127.0.0.1", router.port), timeout=10,
                                  source_address=(source, 0)) as sock, sock.makefile("rb") as f:
        sock.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: shop\r\n" + extra + b"\r\n")
        return read_response(f)


def test_the_fourth_request_from_one_address_gets_429_with_rate_limit_headers(
        upstreams, start_router, http: str) -> None:
    router = start_router(routes(upstreams["a"].url), http=http)
    answers = [ask(router) for _ in range(4)]
    assert [status for status, _, _ in answers] == [200, 200, 200, 429]
    assert answers[0][1]["ratelimit-policy"] == '"limited";q=3;w=10800'
    assert answers[0][1]["ratelimit"].startswith('"limited";r=2;t=')
    status, head, body = answers[3]
    assert head["retry-after"].isdigit() and 3000 < int(head["retry-after"]) <= 3600
    assert head["ratelimit"].startswith('"limited";r=0;t=')
    error = json.loads(body)
    assert error["error"] == "rate_limited" and "1/h per address (burst 3)" in error["detail"]
    assert ask(router, source="127.0.0.2")[0] == 200  # another address has its own bucket
    status, head, _ = ask(router, "/other")
    assert status == 200 and "ratelimit" not in head  # a route without a limit: untouched
    assert router.status()["routes"]["limited"]["rate_limited"] == 1
    assert 'strangler_rate_limited_total{route="limited"} 1' in router.admin("metrics").text


def test_key_header_gives_each_api_key_its_own_bucket(upstreams, start_router, http: str) -> None:
    router = start_router(routes(upstreams["a"].url, key="header:X-Api-Key"), http=http)
    first = [ask(router, extra=b"X-Api-Key: one\r\n")[0] for _ in range(4)]
    assert first == [200, 200, 200, 429]
    assert ask(router, extra=b"X-Api-Key: two\r\n")[0] == 200
    assert ask(router)[0] == 200  # no key: the address's bucket, not key one's


def test_two_workers_share_one_bucket(upstreams, start_router, http: str) -> None:
    router = start_router(routes(upstreams["a"].url), workers=2, http=http)
    assert eventually(lambda: router.status()["workers"] == 2)  # both accept connections
    began = time.monotonic()
    statuses = []
    for _ in range(3):  # 10 connections at once: both workers race to accept them
        socks = [socket.create_connection(("127.0.0.1", router.port), timeout=10) for _ in range(10)]
        for sock in socks:
            sock.sendall(b"GET /limited/x HTTP/1.1\r\nHost: shop\r\n\r\n")
        for sock in socks:
            with sock, sock.makefile("rb") as f:
                statuses.append(read_response(f)[0])
    refill = int((time.monotonic() - began) / 3600)  # tokens the 1/h rate could have added
    assert statuses.count(200) <= 3 + refill and statuses.count(429) >= 27 - refill
    assert router.status()["routes"]["limited"]["rate_limited"] == statuses.count(429)
