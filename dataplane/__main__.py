"""`python -m dataplane nginx|haproxy --routes routes.yaml [--port 8080]`: serve the routes
file through a real nginx or HAProxy on 127.0.0.1 and keep it on the file (dataplane/follow.py)
until SIGTERM or Ctrl-C, which stop the server too. `strangler up --data-plane` runs this in
place of the router; `strangler shift --routes routes.yaml` then steers it. Every applied or
refused change is one line on stderr (the process's log)."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from dataplane import follow, run
from dataplane.errors import ExportError
from dataplane.model import load_plan

PLANES = ("nginx", "haproxy")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dataplane", description=__doc__.splitlines()[0])
    parser.add_argument("target", choices=PLANES)
    parser.add_argument("--routes", default="routes.yaml", type=Path, help="routes file (default routes.yaml)")
    parser.add_argument("--port", default=8080, type=int, help="port on 127.0.0.1 (default 8080)")
    parser.add_argument("--folder", type=Path, default=None,
                        help="where the server's files go and stay: config, access.jsonl (the canary gate reads "
                             "it), applied.json (default: a throwaway folder)")
    args = parser.parse_args(argv)
    try:
        plan = load_plan(args.routes)
        server = run.start(args.target, plan, port=args.port, folder=args.folder)
    except (ExportError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    stop = threading.Event()

    def stopping(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stopping)
    print(f"{args.target} serving {args.routes} on {server.url} (sha256 {plan.sha256[:16]}); following the file; "
          f"access log {server.access_log}",
          file=sys.stderr, flush=True)
    for line in run.limits(args.target, plan):  # said once at start, as `strangler export` says it
        print(f"not carried by {args.target}: {line}", file=sys.stderr, flush=True)
    follower = follow.Follower(server, args.routes, plan)
    try:
        while not stop.is_set():
            if server.process.poll() is not None:
                print(f"error: {args.target} exited ({server.process.returncode}); its log: "
                      f"{(server.folder / 'server.log').read_text(errors='replace')[-2000:]}", file=sys.stderr)
                return 1
            applied = follower.sync()
            if applied is not None:
                said = (f"refused: {applied.error}" if applied.error else
                        f"applied sha256 {applied.sha256[:16]} by {applied.how}")
                print(said, file=sys.stderr, flush=True)
            stop.wait(0.1)
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
