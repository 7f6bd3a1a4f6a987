"""`python -m router --config routes.yaml --host H --port P [--workers N] [--http lean|uvicorn]`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from router.server import DEFAULT_HTTP, HTTP_SERVERS, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m router", description="The strangler router.")
    parser.add_argument("--config", default="routes.yaml", type=Path, help="routes file (default routes.yaml)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", default=8080, type=int)
    parser.add_argument("--workers", default=1, type=int, help="worker processes (default 1)")
    parser.add_argument("--http", default=DEFAULT_HTTP, choices=HTTP_SERVERS,
                        help=f"HTTP server (default {DEFAULT_HTTP}; see benchmarks/README.md)")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    return run(args.config, host=args.host, port=args.port, workers=args.workers, http=args.http)


if __name__ == "__main__":
    sys.exit(main())
