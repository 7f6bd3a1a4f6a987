"""Pick a backend for a request: override > sticky cohort > weight. Pure functions.

Place in the flow: after matching, before forwarding.

The cohort is `hash(route salt, user key) mod 10000`. The primary (first listed backend)
owns the buckets from 0 up; the other backends own slices stacked down from the top in the
order listed. So raising a candidate's weight only *adds* buckets to it — a user who was
moved never flips back — and weights 0 and 100 are exact (0 owns no bucket, 100 owns all).
"""

from __future__ import annotations

from collections.abc import Sequence
from hashlib import blake2b

BUCKETS = 10_000


def bucket(salt: str, key: str) -> int:
    """The user's stable bucket in [0, 10000) for a route salt."""
    digest = blake2b(f"{salt}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS


def choose(backends: Sequence[tuple[str, int]], *, salt: str, key: str,
           override: str | None = None, candidate: str | None = None) -> str:
    """The backend name for one request.

    `backends`: (name, weight in percent) with the primary first; weights sum to 100.
    `override`: the value of the route's override header/cookie: `always` picks the
    candidate, `never` the primary; anything else is ignored.
    """
    primary = backends[0][0]
    if override is not None and candidate is not None:
        if override == "always":
            return candidate
        if override == "never":
            return primary if candidate != primary else _first_other(backends, primary)
    if len(backends) == 1:
        return primary
    return by_bucket(backends, bucket(salt, key))


def by_bucket(backends: Sequence[tuple[str, int]], b: int) -> str:
    """The backend owning bucket `b` (see the module docstring for the layout)."""
    top = BUCKETS
    for name, weight in backends[1:]:
        low = top - weight * (BUCKETS // 100)
        if b >= low:
            return name
        top = low
    return backends[0][0]


def _first_other(backends: Sequence[tuple[str, int]], name: str) -> str:
    for other, _ in backends:
        if other != name:
            return other
    return name
