"""Pick a backend for a request: override > sticky cohort > weight. Pure functions.

Place in the flow: after matching, before forwarding.

The cohort hash is nginx's: `split_clients "${salt}:${key}"` hashes that string with its
MurmurHash2 (32 bits, seed 0), and so does the router, so an nginx or HAProxy exported from
the same routes.yaml (dataplane/) puts every user on the same backend as the router does.

Layout, in nginx's own arithmetic: `slices` lists the backends in the order they are
written into `split_clients` — the primary (first listed backend) first, then the others
in *reverse* listed order, weight-0 backends left out — and each slice ends at nginx's cut
point, `last += percent_in_0.01% * 0xffffffff / 10000` (integer division per slice); the
last slice is nginx's `*` and takes the rest. So the primary owns the hashes from 0 up and
the other backends own slices stacked down from the top in the order listed: raising a
candidate's weight only *adds* users to it (a user who was moved never flips back), and
weights 0 and 100 are exact (0 owns no slice, 100 is the only one). One wart, nginx's:
each slice is rounded down on its own, so with three or more backends the edge between two
slices may move by one hash value in 2**32 when the weights below it are traded.

`bucket` is the same position in 0.01% units, for callers that reason in percent.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from functools import lru_cache

BUCKETS = 10_000
_M = 0xFFFFFFFF  # nginx's scale for split_clients' cut points


def murmur2_py(data: bytes) -> int:
    """nginx's `ngx_murmur_hash2` (src/core/ngx_murmurhash.c), in Python."""
    n = len(data)
    h = n & _M
    i = 0
    while n - i >= 4:
        k = data[i] | data[i + 1] << 8 | data[i + 2] << 16 | data[i + 3] << 24
        k = (k * 0x5BD1E995) & _M
        k ^= k >> 24
        k = (k * 0x5BD1E995) & _M
        h = ((h * 0x5BD1E995) & _M) ^ k
        i += 4
    rest = n - i
    if rest == 3:
        h ^= data[i + 2] << 16
    if rest >= 2:
        h ^= data[i + 1] << 8
    if rest >= 1:
        h = ((h ^ data[i]) * 0x5BD1E995) & _M
    h ^= h >> 13
    h = (h * 0x5BD1E995) & _M
    return h ^ (h >> 15)


def _load() -> tuple[Callable[[bytes], int], bool]:
    if os.environ.get("STRANGLER_PURE_PYTHON", "") not in ("", "0"):
        return murmur2_py, False
    try:
        from router._murmur2 import murmur2 as compiled
    except ImportError:  # no C compiler at install: the Python twin gives the same hashes
        return murmur2_py, False
    return compiled, True


murmur2, NATIVE = _load()  # NATIVE: the compiled router/_murmur2.c is in use


def cohort_key(salt: str, key: str) -> bytes:
    """The bytes nginx's `split_clients "${salt}:${key}"` hashes: the key as it came on the
    wire (header and cookie values reach the router as latin-1), the salt as UTF-8."""
    try:
        raw = key.encode("latin-1")
    except UnicodeEncodeError:
        raw = key.encode()
    return salt.encode() + b":" + raw


def cohort_hash(salt: str, key: str) -> int:
    """The user's 32-bit cohort hash for a route salt (nginx's, see the module docstring)."""
    return murmur2(cohort_key(salt, key))


def bucket(salt: str, key: str) -> int:
    """The user's stable bucket in [0, 10000): with two backends, the primary at weight w
    keeps the user iff bucket < 100 * w (exactly where nginx's cut point falls)."""
    return bucket_of(cohort_hash(salt, key))


def bucket_of(h: int) -> int:
    # The largest p with nginx's cut p * M // 10000 <= h (those p exclude the user), capped:
    # at 100 % nginx's slice is `*` and takes even h == M.
    return min(BUCKETS - 1, (BUCKETS * (h + 1) - 1) // _M)


def slices(backends: Sequence[tuple[str, int]]) -> list[tuple[str, int]]:
    """(backend, weight %) in split_clients order: primary, then the others reversed; no 0s."""
    ordered = [backends[0], *reversed(backends[1:])]
    return [(name, weight) for name, weight in ordered if weight > 0]


def cut_points(backends: Sequence[tuple[str, int]]) -> list[tuple[str, int | None]]:
    """nginx's slices with their upper bounds (exclusive); None for the last one (`*`)."""
    out: list[tuple[str, int | None]] = []
    last = 0
    parts = slices(backends)
    for i, (name, weight) in enumerate(parts):
        if i == len(parts) - 1:
            out.append((name, None))
        else:
            last += weight * 100 * _M // BUCKETS
            out.append((name, last))
    return out


@lru_cache(maxsize=1024)  # a route's backends are one tuple per config: computed once
def _cached_cuts(backends: tuple[tuple[str, int], ...]) -> tuple[tuple[str, int | None], ...]:
    return tuple(cut_points(backends))


def by_hash(backends: Sequence[tuple[str, int]], h: int) -> str:
    """The backend owning cohort hash `h` (see the module docstring for the layout)."""
    for name, cut in _cached_cuts(tuple(backends)):
        if cut is None or h < cut:
            return name
    return backends[0][0]  # unreachable: weights sum to 100, so some slice is `*`


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
    return by_hash(backends, cohort_hash(salt, key))


def _first_other(backends: Sequence[tuple[str, int]], name: str) -> str:
    for other, _ in backends:
        if other != name:
            return other
    return name
