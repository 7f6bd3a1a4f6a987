"""Rate-limit buckets shared by router replicas: one Redis, one key per bucket.

Place in the flow: with `rate_limit_store: {redis: redis://…}` in routes.yaml, a limited
route's request asks `RedisBuckets.take` instead of this machine's table (router/ratelimit.py),
so three replicas behind a load balancer allow a route's burst once, not three times.

One round trip per request: a Lua script reads Redis's own clock (`TIME`, so the replicas'
clocks do not matter), refills the bucket, takes a token and sets a TTL of one full refill
(an idle client's bucket is full again by then: dropping it changes nothing). Redis runs
scripts one at a time, so two replicas never take the same token.

When Redis does not answer within `timeout` (down, slow, unreachable), the request is not
made to wait for it: `on_error: local` (the default) takes the token from this machine's
table instead — the limit then holds per replica, not across them — and `refuse` answers
503. Either way the error is counted (`strangler_rate_limit_store_errors_total`) and logged
(at most one line per 10 s), and Redis is not asked again for `retry_after` seconds, so an
outage costs one timeout, not one per request.

Uses `redis` (redis-py's asyncio client; one connection pool per worker, opened on first use).
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from router.ratelimit import Verdict, verdict

# KEYS[1]: the bucket; ARGV: rate (tokens/s), burst. Returns {allowed 0|1, tokens left}.
# Tokens go back as a string: Redis turns a Lua number reply into an integer.
TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local held = redis.call('HMGET', KEYS[1], 'tokens', 'last')
local tokens, last = tonumber(held[1]), tonumber(held[2])
if tokens == nil or last == nil then tokens, last = burst, now end
if now > last then
  tokens = math.min(burst, tokens + (now - last) * rate)
  last = now
else
  tokens = math.min(burst, tokens)
end
local allowed = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens), 'last', string.format('%.17g', last))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return {allowed, string.format('%.17g', tokens)}
"""

KEY_PREFIX = b"strangler:ratelimit:"
LOG_EVERY = 10.0  # seconds between two log lines about the store


@dataclass(frozen=True, kw_only=True)
class SharedStore:
    """`rate_limit_store:` as validated by router/config.py."""

    redis: str  # redis://[user:password@]host:port/db or rediss://… (TLS)
    timeout: float = 0.05  # seconds a request waits for Redis before `on_error` applies
    on_error: str = "local"  # "local": this machine's buckets; "refuse": 503
    retry_after: float = 1.0  # seconds Redis is left alone after an error


class StoreDown(Exception):
    """Redis did not answer; `on_error: refuse` turns this into a 503."""


class RedisBuckets:
    """Token buckets in Redis, taken with one script call per request."""

    def __init__(self, settings: SharedStore, *, clock: Callable[[], float] = time.monotonic,
                 log: Callable[[str], None] | None = None) -> None:
        self.settings = settings
        self.clock = clock
        self.log = log or (lambda line: print(line, file=sys.stderr, flush=True))
        self.errors = 0  # counted in metrics as strangler_rate_limit_store_errors_total
        self._client: Any = None
        self._script: Any = None
        self._quiet_until = 0.0  # Redis failed: not asked again before this
        self._logged_at = -LOG_EVERY

    async def take(self, key: bytes, rate: float, burst: int) -> Verdict | None:
        """The verdict, or None when Redis is unavailable (the caller applies `on_error`)."""
        now = self.clock()
        if now < self._quiet_until:
            return None
        try:
            script = self._script or self._open()
            allowed, tokens = await asyncio.wait_for(
                script(keys=[KEY_PREFIX + key], args=[repr(rate), burst]), self.settings.timeout)
        except Exception as exc:  # noqa: BLE001 - any failure of the store is an outage to route around
            self._failed(now, exc)
            return None
        return verdict(bool(int(allowed)), float(tokens), rate, burst)

    def _open(self) -> Any:
        import redis.asyncio  # imported only when a replica store is configured

        self._client = redis.asyncio.Redis.from_url(
            self.settings.redis, socket_connect_timeout=self.settings.timeout,
            socket_timeout=self.settings.timeout, health_check_interval=30)
        self._script = self._client.register_script(TAKE)
        return self._script

    def _failed(self, now: float, exc: BaseException) -> None:
        self.errors += 1
        self._quiet_until = now + self.settings.retry_after
        if now - self._logged_at >= LOG_EVERY:
            self._logged_at = now
            fallback = ("this machine's buckets (limits hold per replica until it is back)"
                        if self.settings.on_error == "local" else "503 for limited routes")
            what = str(exc) or type(exc).__name__
            self.log(f"strangler router: rate_limit_store {_safe(self.settings.redis)} did not answer "
                     f"({what}); using {fallback}; asking again in {self.settings.retry_after:g}s")

    async def close(self) -> None:
        client, self._client, self._script = self._client, None, None
        if client is not None:
            await client.aclose()


def _safe(url: str) -> str:
    """The URL without its password, for logs."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.split("@", 1)[1]
    return scheme + sep + rest
