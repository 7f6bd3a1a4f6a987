"""CDC worker healthcheck: exit 0 while the stream's pipeline is alive and making progress.

`strangler cdc run STREAM` writes its metrics about once a second (once per snapshot chunk
while copying) to ``$STRANGLER_STATE_DIR/cdc/<stream>.json`` (default ``.strangler/cdc/``,
see cdc/metrics.py). Healthy: that file was updated within ``--max-age`` seconds and its
state is starting, snapshot or streaming. A stopped or failed pipeline, a stale file (a hung
worker) or no file at all (not started yet) is unhealthy. Standard library only, so the
probe stays cheap next to `strangler cdc status`, which opens database connections.

    python /usr/local/bin/strangler-cdc-healthcheck catalog [--max-age 120]
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

ALIVE = ("starting", "snapshot", "streaming")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="strangler-cdc-healthcheck")
    parser.add_argument("stream")
    parser.add_argument("--max-age", type=float, default=120.0, help="seconds (default 120)")
    args = parser.parse_args(argv)
    folder = Path(os.environ.get("STRANGLER_STATE_DIR", ".strangler")) / "cdc"
    path = folder / f"{args.stream}.json"
    try:
        metrics = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        print(f"unhealthy: {args.stream}: no readable metrics at {path} ({exc})", file=sys.stderr)
        return 1
    age = time.time() - float(metrics.get("updated") or 0)
    state = metrics.get("state")
    if state not in ALIVE:
        print(f"unhealthy: {args.stream}: state {state} {metrics.get('error') or ''}".rstrip(), file=sys.stderr)
        return 1
    if age > args.max_age:
        print(f"unhealthy: {args.stream}: no progress report for {age:.0f}s (limit {args.max_age:.0f}s)",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
