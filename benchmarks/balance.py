"""The cohort hash per call, side by side: the old blake2b bucket, nginx's MurmurHash2 in
Python and in C (router/_murmur2.c), each whole `bucket(salt, key)` call as the router
makes it. Rounds alternate the three; medians over rounds. Prints one JSON line.

    python benchmarks/balance.py [--rounds 7] [--calls 200000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from hashlib import blake2b
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from router import balance  # noqa: E402


def blake2b_bucket(salt: str, key: str) -> int:  # the router's bucket before issue 18
    return int.from_bytes(blake2b(f"{salt}\x00{key}".encode(), digest_size=8).digest(), "big") % 10_000


def murmur_bucket(fn: Callable[[bytes], int]) -> Callable[[str, str], int]:
    def bucket(salt: str, key: str) -> int:
        return balance.bucket_of(fn(balance.cohort_key(salt, key)))
    return bucket


def per_call_ns(fn: Callable[[str, str], int], keys: list[str]) -> float:
    start = time.perf_counter_ns()
    for key in keys:
        fn("products", key)
    return (time.perf_counter_ns() - start) / len(keys)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--calls", type=int, default=200_000)
    args = ap.parse_args()
    from router import _murmur2  # built by `pip install -e .`; this benchmark needs it

    keys = [f"{i:016x}-session" for i in range(args.calls)]  # a typical session-cookie length
    variants = {"blake2b": blake2b_bucket, "murmur2_python": murmur_bucket(balance.murmur2_py),
                "murmur2_c": murmur_bucket(_murmur2.murmur2)}
    seen: dict[str, list[float]] = {name: [] for name in variants}
    for r in range(args.rounds):
        order = list(variants) if r % 2 == 0 else list(reversed(variants))
        for name in order:
            seen[name].append(per_call_ns(variants[name], keys))
        print(f"round {r + 1}/{args.rounds}: " + ", ".join(f"{n} {seen[n][-1]:.0f} ns" for n in variants),
              file=sys.stderr)
    med = {name: statistics.median(v) for name, v in seen.items()}
    print(json.dumps({"benchmark": "balance", "calls": args.calls, "rounds": args.rounds,
                      **{f"{n}_ns_per_call": round(v, 1) for n, v in med.items()},
                      "c_vs_blake2b": round(med["murmur2_c"] / med["blake2b"], 2),
                      "python_vs_c": round(med["murmur2_python"] / med["murmur2_c"], 1)}))


if __name__ == "__main__":
    main()
