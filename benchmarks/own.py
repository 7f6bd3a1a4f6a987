"""The ownership flip's hold time under traffic, next to a hand-rolled cut-over; ONE JSON line.

    python benchmarks/own.py [--flips 20] [--rate 20] [--writers 4] [--write-rate 4] [--json]

Two embedded stacks (SQLite, trigger CDC, direct transport: what `strangler demo` builds,
cli/demo.py), one after the other, each under `strangler traffic` at --rate (its staff edit
prices) plus --writers staff writers, each changing one product of its own (none of the
generator's) --write-rate times a second through the router, waiting for each answer:

  ours  the products route has `writes: catalog`; --flips flips alternate
        `strangler own catalog --by catalog` and `--by monolith` (hold, drain, guard, ids,
        reverse, flip). hold_ms: what `own` reports (hold -> release); client_hold_ms: the
        longest a writer waited on 503 writes_held in a flip.
  peer  what a hand-rolled cut-over does: a write route (POST/PUT/PATCH/DELETE of
        /api/products) whose weights are edited monolith 100 <-> catalog 100, no hold, no
        ownership file, no guards; both streams run, loop-free, as in ours.

After each flip (writes go on for --settle seconds), the writers pause, both streams are
drained (a marker through each), and then: lost_writes counts writers' products whose
last acknowledged price is not what the side now serving writes holds (summed over flips),
divergent_rows the most rows `verify` found differing in both directions after any flip
(a row stays divergent until a later write heals it; *_where: which tables then). failed_requests: answers >= 400 or none, after held
writes were retried (the generator's and the writers'); it must be 0 for ours.
refused_preflight: `own` runs that refused (exit 3, nothing changed) and were run again
after 0.5 s: at 10 writes/s on one row, `verify` in its preflight can see that row mid-flight
on every recheck and report it different (benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
import yaml  # noqa: E402

from devstack import free_port  # noqa: E402
from stack.model import StackSettings, build_stack  # noqa: E402
from stack.supervisor import Supervisor  # noqa: E402
from walkthrough.engine import child_env  # noqa: E402
from walkthrough.engine import stream_process as cdc_process  # noqa: E402
from walkthrough.flow import Traffic, demo_routes, traffic_totals, write_yaml  # noqa: E402
from walkthrough.ownflow import enforce, write_ownership  # noqa: E402

WRITES = ["POST", "PUT", "PATCH", "DELETE"]


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(len(s) * q))] if s else 0.0


# -- the writers ---------------------------------------------------------------------------

@dataclass
class Writer:
    """One staff client changing one product's price, one request at a time; each price is
    new, so the last acknowledged one is what both sides must hold once drained."""

    client: httpx.Client
    product: int
    interval: float
    acked: Decimal | None = None
    n: int = 0
    failed: list[str] = field(default_factory=list)
    held: int = 0
    held_since: float | None = None
    longest_hold: float = 0.0

    def write_once(self) -> None:
        self.n += 1
        price = Decimal(10 + self.product % 50) + Decimal(self.n % 10_000) / 100
        body = {"price": f"{price:.2f}"}
        for _ in range(60):
            try:
                r = self.client.patch(f"/api/products/{self.product}/", json=body)
            except httpx.HTTPError as exc:
                self.failed.append(f"PATCH {self.product}: {type(exc).__name__}: {exc}")
                return
            if r.status_code == 503 and "retry-after" in r.headers and "writes_held" in r.text:
                self.held += 1
                self.held_since = self.held_since or time.monotonic()
                time.sleep(min(1.0, float(r.headers["retry-after"])) / 10)  # poll the hold's end
                continue
            break
        if self.held_since is not None:
            self.longest_hold = max(self.longest_hold, time.monotonic() - self.held_since)
            self.held_since = None
        if r.status_code >= 400:
            self.failed.append(f"PATCH {self.product}: {r.status_code} {r.text[:200]}")
        else:
            self.acked = price


class Writers:
    def __init__(self, base_url: str, token: str, products: list[int], rate: float) -> None:
        self.writers = [Writer(httpx.Client(base_url=base_url, timeout=30,
                                            headers={"Authorization": f"Token {token}"}),
                               p, 1.0 / rate) for p in products]
        self.running = threading.Event()
        self.stop = threading.Event()
        self.idle = [threading.Event() for _ in self.writers]
        self.threads = [threading.Thread(target=self._loop, args=(w, i), daemon=True)
                        for i, w in enumerate(self.writers)]

    def _loop(self, w: Writer, i: int) -> None:
        while not self.stop.is_set():
            if not self.running.is_set():
                self.idle[i].set()
                self.running.wait(0.1)
                continue
            self.idle[i].clear()
            t0 = time.monotonic()
            w.write_once()
            time.sleep(max(0.0, w.interval - (time.monotonic() - t0)))

    def start(self) -> None:
        self.running.set()
        for t in self.threads:
            t.start()

    def pause(self) -> None:
        self.running.clear()
        for e in self.idle:
            e.wait(60)

    def resume(self) -> None:
        for e in self.idle:
            e.clear()
        self.running.set()

    def close(self) -> None:
        self.stop.set()
        self.running.set()
        for t in self.threads:
            t.join(60)
        for w in self.writers:
            w.client.close()


# -- one stack ------------------------------------------------------------------------------

class Shop:
    """An embedded stack in its own folder: the demo's processes, both streams running."""

    def __init__(self, root: Path, kind: str, rate: float) -> None:
        self.kind = kind
        self.home = root / kind
        self.home.mkdir(parents=True)
        self.sup = Supervisor(run_dir=self.home / "run", log_dir=self.home / "logs")
        ports = {"router": free_port(), "monolith": free_port(), "catalog": free_port()}
        routes = demo_routes(monolith_url=f"http://127.0.0.1:{ports['monolith']}",
                             catalog_url=f"http://127.0.0.1:{ports['catalog']}")
        if kind == "peer":  # no ownership: a write route moved by weights, like by hand
            del routes["ownership"]
            products = routes["routes"][0]
            del products["writes"]
            routes["routes"].insert(0, {**{k: v for k, v in products.items() if k not in ("shadow", "fallback")},
                                        "name": "product-writes",
                                        "match": {"prefix": "/api/products", "methods": WRITES}})
            routes["ledger"] = "ledger.jsonl"
        self.routes_path = self.home / "routes.yaml"
        write_yaml(self.routes_path, routes)
        if kind == "ours":
            write_ownership(self.home)
        self.settings = StackSettings(state=self.home, routes=self.routes_path,
                                      router_port=ports["router"], monolith_port=ports["monolith"],
                                      service_ports={"catalog": ports["catalog"]}, admin_token=secrets.token_urlsafe(16),
                                      identity_secret=secrets.token_hex(32), seed="small")
        self.env = child_env(self.home, self.settings)
        self.router = f"http://127.0.0.1:{ports['router']}"
        self.rate = rate
        self.owner = "monolith"
        self.traffic: Traffic | None = None
        self.refused: list[str] = []  # `own` refusals (exit 3) before a flip went through

    def start(self) -> None:
        self.sup.start(build_stack(self.settings, mode="embedded"), progress=lambda _m: None)
        for stream in ("catalog", "catalog_reverse"):
            self.sup.start_more(cdc_process(self.home, self.settings, stream), progress=lambda _m: None)
        os.environ.update(self.env)  # drains and verify below run here, on this stack
        self.wait_drained(120.0)
        if self.kind == "ours":
            enforce(self.env)
        self.traffic = Traffic(base_url=self.router, rate=self.rate, log=self.home / "logs" / "traffic.log",
                               env=self.env)
        self.traffic.start()

    def streams(self) -> Any:
        from cdc import config

        return config.load(REPO / "streams.yaml")

    def wait_drained(self, timeout: float) -> None:
        """A marker through each stream; back once both targets applied theirs."""
        from cdc import drain

        sf = self.streams()
        deadline = time.monotonic() + timeout
        for name in ("catalog", "catalog_reverse"):
            cfg = sf.stream(name)
            while True:
                try:
                    at = drain.mark(cfg)
                    break
                except Exception:  # the stream installs its changelog on start
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
            if not drain.wait_applied_to(cfg, at, timeout=max(0.1, deadline - time.monotonic())):
                raise SystemExit(f"{self.kind}: stream {name} did not drain in {timeout:.0f}s; "
                                 f"see {self.home / 'logs'}")

    def hot_products(self, n: int) -> list[int]:
        """Active products the traffic generator never edits (it edits its first 100 by stock)."""
        with httpx.Client(base_url=self.router, timeout=30) as c:
            theirs = {p["id"] for p in c.get("/api/products/?page_size=100&is_active=true&ordering=-stock_count")
                      .json()["results"]}
            mine = [p["id"] for p in c.get("/api/products/?page_size=100&is_active=true&ordering=stock_count")
                    .json()["results"] if p["id"] not in theirs]
        if len(mine) < n:
            raise SystemExit(f"only {len(mine)} products outside the generator's set; use --writers {len(mine)}")
        return mine[:n]

    def staff_token(self) -> str:
        with httpx.Client(base_url=self.router, timeout=30) as c:
            r = c.post("/api/auth/login/", json={"username": "staff2", "password": "shop-password"})
            r.raise_for_status()
            return str(r.json()["token"])

    def flip(self) -> float | None:
        """Move writes to the other side; ours: `strangler own` (its hold, ms), peer: weights."""
        to = "catalog" if self.owner == "monolith" else "monolith"
        if self.kind == "ours":
            import subprocess

            argv = [sys.executable, "-m", "cli.main", "own", "catalog", "--by", to, "--reason",
                    "benchmarks/own.py", "--routes", str(self.routes_path), "--router", self.router, "--json"]
            for _ in range(10):
                proc = subprocess.run(argv, cwd=REPO, env=self.env, capture_output=True, text=True,
                                      timeout=180, check=False)
                with (self.home / "logs" / "own.log").open("a") as fh:
                    fh.write(proc.stderr)
                if proc.returncode != 3:
                    break
                # refused in preflight, nothing changed (e.g. verify saw a hot row mid-flight)
                self.refused.append(proc.stderr.strip().splitlines()[-1][:300])
                time.sleep(0.5)
            try:
                doc = json.loads(proc.stdout)
            except ValueError:
                doc = {}
            if proc.returncode != 0 or doc.get("outcome") != "done":
                raise SystemExit(f"`strangler own catalog --by {to}` failed (exit {proc.returncode}): "
                                 f"{proc.stderr.strip()[-800:]}")
            self.owner = to
            return 1000 * float(doc["hold_s"])
        doc = yaml.safe_load(self.routes_path.read_text())
        doc["routes"][0]["backends"] = {"monolith": 100 if to == "monolith" else 0,
                                        "catalog": 100 if to == "catalog" else 0}
        write_yaml(self.routes_path, doc)
        self.owner = to
        self._wait_router_weights(to)
        return None

    def _wait_router_weights(self, to: str) -> None:
        """Until the router serves the edited weights (it reloads a changed file by itself)."""
        from control.routerapi import RouterAPI, route_entry, weights

        deadline = time.monotonic() + 30
        with RouterAPI(self.router, token=self.settings.admin_token) as api:
            while time.monotonic() < deadline:
                if weights(route_entry(api.status(), "product-writes")).get(to) == 100:
                    return
                time.sleep(0.05)
        raise SystemExit(f"peer: the router did not take the weight edit to {to} in 30 s")

    def prices(self, product: int) -> tuple[Decimal, Decimal]:
        """(monolith price, catalog price) of a product, read from the databases."""
        with sqlite3.connect(self.home / "monolith.sqlite3", timeout=30) as db:
            (m,) = db.execute("SELECT price FROM catalog_product WHERE id = ?", (product,)).fetchone()
        with sqlite3.connect(self.home / "catalog.sqlite3", timeout=30) as db:
            (c,) = db.execute("SELECT price_cents FROM products WHERE id = ?", (product,)).fetchone()
        return Decimal(str(m)).quantize(Decimal("0.01")), Decimal(int(c)) / 100

    def divergent(self) -> dict[str, int]:
        """Rows `verify` finds differing, per stream and target table (only those with any)."""
        from control.verify import run_verify

        sf = self.streams()
        out = {}
        for name in ("catalog", "catalog_reverse"):
            for d in run_verify(sf.stream(name), recheck_wait=0.5):
                n = len(d.missing) + len(d.extra) + len(d.different)
                if n:
                    out[f"{name}:{d.table}"] = n
        return out

    def stop(self) -> dict[str, Any]:
        summary: dict[str, Any] = {}
        try:
            if self.traffic is not None and self.traffic.alive():
                summary = self.traffic.stop()
        finally:
            self.sup.stop()
        return summary


def run(kind: str, root: Path, args: argparse.Namespace) -> dict[str, Any]:
    say(f"{kind}: starting the stack (monolith seeded, catalog, router, both streams, traffic)")
    shop = Shop(root, kind, args.rate)
    writers: Writers | None = None
    holds: list[float] = []
    client_holds: list[float] = []
    lost = divergent = 0
    divergent_where: dict[str, int] = {}
    flips = 0
    summary: dict[str, Any] = {}
    try:
        shop.start()
        writers = Writers(shop.router, shop.staff_token(), shop.hot_products(args.writers), args.write_rate)
        writers.start()
        for i in range(args.flips):
            time.sleep(args.settle)
            for w in writers.writers:
                w.longest_hold = 0.0
            hold = shop.flip()
            flips += 1
            time.sleep(args.settle)
            writers.pause()
            shop.wait_drained(60.0)
            lost_now = 0
            for w in writers.writers:
                if w.acked is None:
                    continue
                mono, cat = shop.prices(w.product)
                serving = cat if shop.owner == "catalog" else mono
                lost_now += serving != w.acked
            where = shop.divergent()
            div_now = sum(where.values())
            # divergence stays until a later write heals it: the peak, and where it was
            lost = lost + lost_now
            if div_now >= divergent:
                divergent, divergent_where = div_now, where
            ch = 1000 * max(w.longest_hold for w in writers.writers)
            client_holds.append(ch)
            if hold is not None:
                holds.append(hold)
            say(f"{kind}: flip {i + 1}/{args.flips} -> {shop.owner}"
                + (f", hold {hold:.0f} ms (writers waited up to {ch:.0f} ms)" if hold is not None else "")
                + f"; lost writes {lost_now}, divergent rows {div_now}")
            writers.resume()
    finally:
        if writers is not None:
            writers.close()
        summary = shop.stop()
    requests, failed, failures = traffic_totals(summary)
    ws = writers.writers if writers else []
    wfail = [f for w in ws for f in w.failed]
    return {"flips": flips, "hold_ms": holds, "client_hold_ms": client_holds,
            "failed": failed + len(wfail), "failures": (failures + wfail)[:5],
            "requests": requests + sum(w.n for w in ws),
            "held_retried": int(summary.get("held_retried") or 0) + sum(w.held for w in ws),
            "lost": lost, "divergent": divergent, "divergent_where": divergent_where,
            "refused": shop.refused}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--flips", type=int, default=20, help="flips per stack (alternating sides)")
    ap.add_argument("--rate", type=float, default=20.0, help="`strangler traffic` requests/s")
    ap.add_argument("--writers", type=int, default=4, help="staff writers, one product each")
    ap.add_argument("--write-rate", type=float, default=4.0, help="writes/s per writer")
    ap.add_argument("--settle", type=float, default=1.0, help="seconds of writes before and after a flip")
    ap.add_argument("--json", action="store_true", default=True, help="one JSON line (the default)")
    args = ap.parse_args()
    if args.flips < 1 or args.rate <= 0 or args.writers < 1 or args.write_rate <= 0:
        ap.error("--flips and --writers must be >= 1, --rate and --write-rate > 0")
    root = Path(tempfile.mkdtemp(prefix="strangler-bench-own-"))
    saved = dict(os.environ)
    t0 = time.monotonic()
    try:
        ours = run("ours", root, args)
        os.environ.clear()
        os.environ.update(saved)
        peer = run("peer", root, args)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    h = ours["hold_ms"]
    result = {
        "benchmark": "own", "flips": ours["flips"], "rate": args.rate, "writers": args.writers,
        "write_rate": args.write_rate,
        "hold_ms_p50": round(statistics.median(h), 1), "hold_ms_p99": round(pct(h, 0.99), 1),
        "hold_ms_max": round(max(h), 1),
        "client_hold_ms_p50": round(statistics.median(ours["client_hold_ms"]), 1),
        "client_hold_ms_max": round(max(ours["client_hold_ms"]), 1),
        "requests": ours["requests"], "failed_requests": ours["failed"], "held_retried": ours["held_retried"],
        "refused_preflight": len(ours["refused"]),
        "lost_writes": ours["lost"], "divergent_rows": ours["divergent"],
        "peer_flips": peer["flips"], "peer_requests": peer["requests"], "peer_failed_requests": peer["failed"],
        "peer_lost_writes": peer["lost"], "peer_divergent_rows": peer["divergent"],
        "peer_divergent_where": peer["divergent_where"],
        "seconds": round(time.monotonic() - t0, 1),
    }
    if ours["refused"]:
        result["refusals"] = ours["refused"][:3]
    if ours["failures"] or peer["failures"]:
        result["failures"] = {"ours": ours["failures"], "peer": peer["failures"]}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
