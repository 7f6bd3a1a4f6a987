"""Rate limits: a token bucket per route and client key, shared by all workers of a router.

Place in the flow: after a route is matched and the client address is known (trusted proxies
applied), a route with `rate_limit:` asks `Limiter.take` for one token of the bucket named by
(route, client key). No token → 429 with `Retry-After`; with or without one, the answer
carries the IETF `RateLimit-Policy` / `RateLimit` headers (draft-ietf-httpapi-ratelimit-headers):

    RateLimit-Policy: "<route>";q=<burst>;w=<seconds to refill a whole burst>
    RateLimit: "<route>";r=<tokens left>;t=<seconds until the bucket is full again>

Shared by workers: the buckets live in a fixed table of slots (`BucketTable`) in a file that
every worker of one router maps into memory (in the supervisor's metrics folder), updated
under a POSIX byte-range lock per group of slots (`fcntl.lockf`: released by the kernel if a
worker dies holding it). The time is `time.monotonic()`, one clock for every process of a
machine. A take costs a hash, two lock syscalls and one struct read/write: a few µs, no
round trip. A single process without a metrics folder uses the same table in anonymous memory.

Eviction: a key lands in one group of `WAYS` slots; a new key in a full group takes the slot
touched longest ago (most likely refilled to full anyway; if not, that client gets a fresh
burst — the table holds `GROUPS * WAYS` keys, far beyond the busy clients of one router).

Across replicas: `rate_limit_store: {redis: redis://…}` in routes.yaml puts the buckets in
one Redis that every replica asks (router/sharedbuckets.py: one Lua script per request, on
Redis's clock); the `ReplicaStore` protocol is the seam for another server. Without it, each
replica keeps its own buckets (a route's burst is allowed once per replica).
"""

from __future__ import annotations

import fcntl
import hashlib
import math
import mmap
import os
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol

SLOT = struct.Struct("<Qdd")  # key fingerprint (0: empty), tokens, last refill (monotonic s)
WAYS = 4
GROUP = struct.Struct("<" + "Qdd" * WAYS)
GROUPS = 16384  # × WAYS keys; the file is GROUPS × GROUP.size bytes (1.5 MiB)
TABLE_FILE = "ratelimit.table"


@dataclass(frozen=True, kw_only=True)
class RateLimit:
    """A route's `rate_limit:` (validated in config.py)."""

    rate: float  # tokens added per second
    burst: int  # bucket size: requests allowed at once
    key: str  # "address" | "user" | "header" | "route"
    header: bytes | None = None  # lower-case header name for key "header"
    spec: str = ""  # as written, for messages: "10/s"
    policy: bytes = b""  # the RateLimit-Policy value, built once per config


class Verdict(NamedTuple):
    allowed: bool
    remaining: int  # whole tokens left after this request
    retry_after: float  # seconds until one token is there (0 when allowed)
    full_in: float  # seconds until the bucket is full again


def take(tokens: float, last: float, now: float, rate: float,
         burst: int) -> tuple[Verdict, float, float]:
    """The bucket math: refill since `last`, take one token if there is one.

    Returns the verdict and the new (tokens, last). A clock a hair behind `last` (another
    worker read the time first, took the lock later) refills nothing.
    """
    if now > last:
        tokens = min(float(burst), tokens + (now - last) * rate)
        last = now
    else:
        tokens = min(float(burst), tokens)
    allowed = tokens >= 1.0
    if allowed:
        tokens -= 1.0
    return verdict(allowed, tokens, rate, burst), tokens, last


def verdict(allowed: bool, tokens: float, rate: float, burst: int) -> Verdict:
    """What a take answers, from whether it got a token and the tokens left after it."""
    if allowed:
        return Verdict(True, int(tokens), 0.0, (burst - tokens) / rate)
    return Verdict(False, 0, (1.0 - tokens) / rate, (burst - tokens) / rate)


class BucketStore(Protocol):
    """Where buckets live on this machine: the table its workers share."""

    def take(self, key: bytes, rate: float, burst: int) -> Verdict: ...


class ReplicaStore(Protocol):
    """Where buckets live for several replicas: a server they share (router/sharedbuckets.py).
    None from `take` means the server did not answer."""

    async def take(self, key: bytes, rate: float, burst: int) -> Verdict | None: ...

    async def close(self) -> None: ...


class BucketTable:
    """Token buckets in a fixed table of slots: in a file mapped by every worker, or in
    anonymous memory for one process."""

    def __init__(self, path: str | os.PathLike[str] | None = None, *, groups: int = GROUPS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.groups = groups
        self.clock = clock
        size = groups * GROUP.size
        self.fd: int | None = None
        if path is None:
            self.memory = mmap.mmap(-1, size)
        else:
            self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            if os.fstat(self.fd).st_size < size:
                os.ftruncate(self.fd, size)  # zeros: empty slots; the same size from every worker
            self.memory = mmap.mmap(self.fd, size)

    def take(self, key: bytes, rate: float, burst: int) -> Verdict:
        fingerprint = int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") or 1
        group = fingerprint % self.groups
        offset = group * GROUP.size
        fd = self.fd
        if fd is not None:
            fcntl.lockf(fd, fcntl.LOCK_EX, 1, group)
        try:
            now = self.clock()
            row = GROUP.unpack_from(self.memory, offset)
            way = _way(row, fingerprint)
            if row[way * 3] == fingerprint:
                tokens, last = row[way * 3 + 1], row[way * 3 + 2]
            else:
                tokens, last = float(burst), now  # a new client starts with a full burst
            verdict, tokens, last = take(tokens, last, now, rate, burst)
            SLOT.pack_into(self.memory, offset + way * SLOT.size, fingerprint, tokens, last)
        finally:
            if fd is not None:
                fcntl.lockf(fd, fcntl.LOCK_UN, 1, group)
        return verdict

    def close(self) -> None:
        self.memory.close()
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _way(row: tuple[Any, ...], fingerprint: int) -> int:
    """The slot of `fingerprint` in its group, else an empty one, else the least recently used."""
    empty = oldest = -1
    for way in range(WAYS):
        held = row[way * 3]
        if held == fingerprint:
            return way
        if held == 0:
            if empty < 0:
                empty = way
        elif oldest < 0 or row[way * 3 + 2] < row[oldest * 3 + 2]:
            oldest = way
    return empty if empty >= 0 else oldest


class Limiter:
    """Answers whether a request may pass its route's limit, and with which headers."""

    def __init__(self, store: BucketStore) -> None:
        self.store = store

    @classmethod
    def for_workers(cls, directory: str | os.PathLike[str] | None) -> Limiter:
        """The table shared by every worker using `directory` (anonymous without one)."""
        path = None
        if directory is not None:
            Path(directory).mkdir(parents=True, exist_ok=True)
            path = Path(directory) / TABLE_FILE
        return cls(BucketTable(path))

    def check(self, route: str, limit: RateLimit, client: str) -> Verdict:
        return self.store.take(_bucket(route, client), limit.rate, limit.burst)

    async def check_replicas(self, replicas: ReplicaStore, route: str, limit: RateLimit,
                             client: str) -> Verdict | None:
        """The replicas' shared bucket; None when their store did not answer."""
        return await replicas.take(_bucket(route, client), limit.rate, limit.burst)

    def close(self) -> None:
        close = getattr(self.store, "close", None)
        if close is not None:
            close()


def _bucket(route: str, client: str) -> bytes:
    return f"{route}\x00{client}".encode("utf-8", "surrogateescape")


def client_key(limit: RateLimit, scope: Any, cookie: bytes | None,
               cohort_header: str | None, cohort_cookie: str | None) -> str:
    """The bucket name for this request: its address, user key, header value, or the route
    (one bucket for all). A request without a user key or the header is keyed by its address."""
    kind = limit.key
    if kind == "route":
        return "*"
    value: str | None = None
    if kind == "header":
        value = _header(scope["headers"], limit.header)
    elif kind == "user":
        if cohort_header is not None:
            value = _header(scope["headers"], cohort_header.encode())
        if value is None and cohort_cookie is not None and cookie is not None:
            value = _cookie(cookie, cohort_cookie.encode())
    if value is not None:
        return f"{kind}:{value}"
    client = scope.get("client")
    return f"address:{client[0] if client else ''}"


def headers(route: str, limit: RateLimit, verdict: Verdict) -> tuple[tuple[bytes, bytes], ...]:
    """`RateLimit-Policy` and `RateLimit` (plus `Retry-After` on a refusal)."""
    state = f'"{route}";r={verdict.remaining};t={math.ceil(verdict.full_in)}'.encode()
    out: tuple[tuple[bytes, bytes], ...] = ((b"ratelimit-policy", limit.policy), (b"ratelimit", state))
    if not verdict.allowed:
        out += ((b"retry-after", str(max(1, math.ceil(verdict.retry_after))).encode()),)
    return out


def policy(route: str, rate: float, burst: int) -> bytes:
    """`"<route>";q=<burst>;w=<seconds to refill it>`: the bucket as a quota per window."""
    return f'"{route}";q={burst};w={max(1, math.ceil(burst / rate))}'.encode()


def _header(headers: list[tuple[bytes, bytes]], name: bytes | None) -> str | None:
    for k, v in headers:
        if k == name:
            return v.decode("latin-1")
    return None


def _cookie(cookie: bytes, name: bytes) -> str | None:
    for part in cookie.split(b";"):
        k, sep, v = part.strip().partition(b"=")
        if sep and k == name:
            return v.decode("latin-1")
    return None
