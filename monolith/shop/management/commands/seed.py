"""``python -m monolith seed --size small|medium|large [--seed N] [--reset]``."""

from __future__ import annotations

import json
import time

from django.core.management.base import BaseCommand, CommandError, CommandParser

from monolith.shop.seed_sizes import SIZES, SeedError
from monolith.shop.seeding import DEFAULT_RANDOM_SEED, seed


class Command(BaseCommand):
    help = "Fill the shop with deterministic data (bulk inserts, fixed random seed)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--size", default="small",
                            help=f"how much data: {', '.join(SIZES)} (default small)")
        parser.add_argument("--seed", type=int, default=DEFAULT_RANDOM_SEED,
                            help="random seed; same seed, same rows")
        parser.add_argument("--reset", action="store_true",
                            help="delete existing shop data first")
        parser.add_argument("--json", action="store_true", help="print row counts as JSON")

    def handle(self, *args: object, **opts: object) -> None:
        started = time.monotonic()
        try:
            counts = seed(str(opts["size"]), random_seed=int(opts["seed"]),  # type: ignore[call-overload]
                          reset=bool(opts["reset"]), progress=lambda m: self.stderr.write(m))
        except SeedError as exc:
            raise CommandError(str(exc)) from exc
        elapsed = time.monotonic() - started
        if opts["json"]:
            self.stdout.write(json.dumps({"size": opts["size"], "seconds": round(elapsed, 2),
                                          "rows": counts}))
        else:
            for table, n in counts.items():
                self.stdout.write(f"{table:28} {n:>9}")
            self.stdout.write(f"seeded {opts['size']} in {elapsed:.1f}s")
