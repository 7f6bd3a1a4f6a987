"""Router CPU per request, A/B between source trees: prints one JSON line per variant.

    python benchmarks/router_ab.py NAME=TREE[:ENV=VALUE,...] NAME=TREE ... [--rounds 5] [--duration 4]

Each variant is `python -m router` (1 worker, access log off, a metrics folder as under the
supervisor) run from its own tree, all in front of one small-JSON uvicorn upstream. Rounds
alternate the variants (`wrk -t1 -c32`); per round the router process's CPU (utime + stime)
is divided by the requests wrk completed; `delta_us_vs_first` is the median over rounds of
the difference to the first variant in the same round. CPU per request is the stable
figure on a shared 2-core machine, throughput is not (MEASUREMENTS.md). Needs wrk.
Export trees with e.g. `git archive main | tar -x -C /tmp/a`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from devstack import free_port  # noqa: E402

ROUTES = """access_log: false
ledger: {ledger}
upstreams: {{up: {{url: "http://127.0.0.1:{port}"}}}}
routes: [{{name: all, match: {{prefix: /}}, backends: {{up: 100}}}}]
"""


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_port(port: int, what: str = "the upstream", proc: subprocess.Popen[bytes] | None = None) -> None:
    import socket

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} (run it by hand to see why)")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what}: nothing listens on {port}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("variants", nargs="+", help="NAME=TREE[:ENV=VALUE,...]")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=int, default=4)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="router-ab-"))
    up_port = free_port()
    procs = [subprocess.Popen([sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[2]); "
                               "from benchmarks.router import serve_upstream; serve_upstream(int(sys.argv[1]))",
                               str(up_port), str(ROOT)], stderr=subprocess.DEVNULL)]
    routers: dict[str, tuple[int, int]] = {}
    try:
        wait_port(up_port)
        for spec in args.variants:
            name, _, rest = spec.partition("=")
            tree, _, env_text = rest.partition(":")
            env = {**os.environ, "PYTHONPATH": tree,
                   "STRANGLER_METRICS_DIR": str(work / f"metrics-{name}")}
            env.update(dict(kv.split("=", 1) for kv in env_text.split(",") if kv))
            config = work / f"{name}.yaml"
            config.write_text(ROUTES.format(port=up_port, ledger=work / f"{name}.jsonl"))
            port = free_port()
            proc = subprocess.Popen([sys.executable, "-m", "router", "--config", str(config),
                                     "--port", str(port), "--workers", "1"], cwd=tree, env=env,
                                    stderr=subprocess.DEVNULL)
            procs.append(proc)
            wait_port(port, f"variant {name}", proc)
            routers[name] = (port, proc.pid)
        for port, _ in routers.values():  # warm up
            subprocess.run(["wrk", "-t1", "-c32", "-d1s", f"http://127.0.0.1:{port}/x"], capture_output=True)
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in routers}
        for _ in range(args.rounds):
            for name, (port, pid) in routers.items():
                before = cpu_seconds(pid)
                out = subprocess.run(["wrk", "-t1", "-c32", f"-d{args.duration}s", f"http://127.0.0.1:{port}/x"],
                                     capture_output=True, text=True).stdout
                used = cpu_seconds(pid) - before
                done = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
                results[name].append((used / done * 1e6, done / args.duration))
        base = results[next(iter(results))]
        for name, rows in results.items():
            # The difference to the first variant, round by round (the same machine state).
            deltas = [r[0] - b[0] for r, b in zip(rows, base, strict=True)]
            print(json.dumps({"variant": name, "cpu_us_per_request": round(statistics.median(r[0] for r in rows), 2),
                              "delta_us_vs_first": round(statistics.median(deltas), 2),
                              "rps": round(statistics.median(r[1] for r in rows)),
                              "rounds_cpu_us": [round(r[0], 2) for r in rows]}))
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    main()
