"""Benchmark: the catalog service vs the monolith on product list and product detail.

Same data (the monolith seeded `medium`, ~10k products; the service's database filled by
the CDC snapshot of the `catalog` stream), same server settings (uvicorn, one worker each,
no per-request log line on either side: the monolith's serve command turns uvicorn's
access log off, and the service runs with CATALOG_LOG_LEVEL=WARNING), same load (wrk, 1 thread, 16 connections, random pages / ids),
alternating rounds so machine noise hits both sides alike. Prints ONE JSON line:

    {"list": {"service_rps", "monolith_rps", "ratio"}, "detail": {...}, ...}

Target: ratio >= 2 on both endpoints. Needs `wrk` (install with `apt-get install wrk`).

    .venv/bin/python benchmarks/catalog.py [--size medium] [--rounds 3] [--seconds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from devstack import free_port  # noqa: E402
from tests.extracted.catalog.shop import load_via_cdc  # noqa: E402

LUA = {
    "list": """
math.randomseed(42)
request = function()
  return wrk.format("GET", "/api/products/?page=" .. math.random(1, {pages}))
end
""",
    "detail": """
math.randomseed(7)
request = function()
  return wrk.format("GET", "/api/products/" .. math.random(1, {products}) .. "/")
end
""",
}
PRODUCTS = {"small": 200, "medium": 10_000, "large": 100_000}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def start(cmd: list[str], env: dict[str, str], port: int, stack: ExitStack) -> None:
    proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop() -> None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()

    stack.callback(stop)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{cmd[2]} exited with {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/products/1/", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)
    raise SystemExit(f"{cmd[2]} did not come up on port {port}")


def wrk(port: int, script: Path, seconds: int, connections: int) -> tuple[float, int]:
    done = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", str(script), f"http://127.0.0.1:{port}"],
        capture_output=True, text=True, check=True,
    )
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", done.stdout).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", done.stdout)
    return rps, int(bad.group(1)) if bad else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="medium", choices=sorted(PRODUCTS))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        log("wrk is needed: install with `apt-get install wrk`")
        return 1
    folder = Path(tempfile.mkdtemp(prefix="bench-catalog-"))
    monolith_url = f"sqlite:///{folder / 'monolith.sqlite3'}"
    catalog_url = f"sqlite:///{folder / 'catalog.sqlite3'}"
    env = {**os.environ, "DATABASE_URL": monolith_url, "CATALOG_DATABASE_URL": catalog_url}
    py = sys.executable
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, folder, True)
        log(f"seeding the monolith ({args.size}) ...")
        for step in (["migrate", "--noinput", "-v", "0"], ["seed", "--size", args.size]):
            subprocess.run([py, "-m", "monolith", *step], env=env, cwd=REPO, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        log("loading the service's database with the CDC snapshot ...")
        subprocess.run([py, "-m", "extracted.catalog", "--migrate-only"], env=env, cwd=REPO,
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        load_via_cdc(monolith_url=monolith_url, catalog_url=catalog_url)
        ports = {"monolith": free_port(), "service": free_port()}
        start([py, "-m", "monolith", "serve", "--host", "127.0.0.1", "--port", str(ports["monolith"]),
               "--workers", "1", "--log-level", "warning"], env, ports["monolith"], stack)
        start([py, "-m", "extracted.catalog", "--host", "127.0.0.1", "--port", str(ports["service"]),
               "--workers", "1"], {**env, "CATALOG_LOG_LEVEL": "WARNING"}, ports["service"], stack)
        products = PRODUCTS[args.size]
        scripts = {}
        for name, body in LUA.items():
            scripts[name] = folder / f"{name}.lua"
            scripts[name].write_text(body.replace("{pages}", str(products // 20)).replace("{products}", str(products)))
        for name in scripts:  # warm both (imports, caches, connection pools)
            for side in ports:
                wrk(ports[side], scripts[name], 1, args.connections)
        totals = {name: {side: [] for side in ports} for name in scripts}
        errors = 0
        for r in range(args.rounds):
            for name in scripts:
                order = list(ports) if r % 2 == 0 else list(reversed(ports))
                for side in order:
                    rps, bad = wrk(ports[side], scripts[name], args.seconds, args.connections)
                    totals[name][side].append(rps)
                    errors += bad
                    log(f"round {r + 1} {name:6} {side:8} {rps:8.0f} req/s")
    result: dict[str, object] = {"benchmark": "catalog", "size": args.size, "rounds": args.rounds,
                                 "seconds_per_run": args.seconds, "connections": args.connections}
    for name, sides in totals.items():
        service = sum(sides["service"]) / len(sides["service"])
        monolith = sum(sides["monolith"]) / len(sides["monolith"])
        result[name] = {"service_rps": round(service, 1), "monolith_rps": round(monolith, 1),
                        "ratio": round(service / monolith, 2)}
    result["non_2xx"] = errors
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
