"""Weights changed every second under wrk, through a running nginx and HAProxy: prints ONE JSON line.

    python benchmarks/steer.py [--duration 60] [--connections 8]

Issue 18's "under wrk load through the exported nginx and HAProxy while weights change every
second for a minute: zero failed requests". Two loopback upstreams answer their name; a route
splits them by a cohort header (every wrk request another user). Each plane is started from
the routes file by `dataplane.run` and kept on it by `dataplane.follow.Follower` (through the
tests' `followed` helper); once a
second the weight moves (0 → 100 and back, in steps of 10) through `control.shift.shift_file`,
as `strangler shift --routes` does. Runs, one after another, in the same run:
- `haproxy`: keep-alive connections (new weights through the runtime API, no reload);
- `nginx_close`: a connection per request (nginx's reload is hitless for those);
- `nginx_keepalive`: keep-alive connections (each reload closes idle keep-alive connections:
  a request sent on one in that instant is a wrk read error — the figure says how many).
Per plane: requests, failed (socket errors + non-2xx), changes applied, and how.

Needs nginx, haproxy and wrk (`python -m devstack.apt`).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from control.shift import shift_file  # noqa: E402
from dataplane import run  # noqa: E402
from tests.dataplane.wire import WRK_USERS_LUA, canary_routes, followed, named_upstreams  # noqa: E402


def one(target: str, close: bool, ports: dict[str, int], tmp: Path, duration: float, conns: int) -> dict[str, object]:
    folder = Path(tempfile.mkdtemp(dir=tmp))
    routes = folder / "routes.yaml"
    routes.write_text(canary_routes(ports))
    (folder / "users.lua").write_text(WRK_USERS_LUA)
    with followed(target, routes) as (server, applied):
        load = subprocess.Popen(["wrk", "-t1", f"-c{conns}", f"-d{duration:.0f}s", "-s", str(folder / "users.lua"),
                                 f"{server.url}/x"], stdout=subprocess.PIPE, text=True,
                                env={**os.environ, "CLOSE": "1" if close else "0"})
        cycle = [*range(10, 101, 10), *range(90, -1, -10)]
        changes = 0
        started = time.monotonic()
        while load.poll() is None and time.monotonic() - started < duration - 1:
            shift_file(routes, route="root", backend="catalog", weight=cycle[changes % len(cycle)],
                       reason="benchmarks/steer.py")
            changes += 1
            time.sleep(max(0.0, started + changes - time.monotonic()))
        output, _ = load.communicate(timeout=duration + 30)
    hows: dict[str, int] = {}
    for a in applied:
        hows[a.how] = hows.get(a.how, 0) + 1
    requests = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    errors = sum(int(g) for g in socket.groups()) if socket else 0
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return {"requests": requests, "failed": errors + (int(non2xx.group(1)) if non2xx else 0),
            "socket_errors": errors, "changes": changes, "applied": hows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args()
    for tool in ("nginx", "haproxy"):
        run.binary(tool)
    line: dict[str, object] = {"duration_s": args.duration, "connections": args.connections}
    with tempfile.TemporaryDirectory() as tmp, named_upstreams(("monolith", "catalog")) as ports:
        for name, target, close in (("haproxy", "haproxy", False), ("nginx_close", "nginx", True),
                                    ("nginx_keepalive", "nginx", False)):
            print(f"steer: {name} for {args.duration:.0f} s", file=sys.stderr, flush=True)
            for key, value in one(target, close, ports, Path(tmp), args.duration, args.connections).items():
                line[f"{name}_{key}"] = value
    line["target_met"] = line["haproxy_failed"] == 0 and line["nginx_close_failed"] == 0
    print(json.dumps(line))


if __name__ == "__main__":
    main()
