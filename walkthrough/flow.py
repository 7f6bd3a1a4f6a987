"""Pieces the walkthrough's steps share: its routes, traffic, the split sampler, shadowing
(and the recheck of its differing reads).

Everything lives in `.strangler/walkthrough/` (wiped at each run): the two SQLite
databases (with `--real` they are in PostgreSQL), the routes file its router serves (free loopback ports, so a running
`strangler up` is not disturbed), its ledger, logs and pid files.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from control.errors import ControlError
from control.routerapi import RouterAPI, snapshots

SERVICE = "catalog"  # the service this walkthrough moves out (extracted/catalog/service.yaml)
PRODUCTS = "products"  # the canary route: product reads (writes follow ownership)
DRILL = "products-drill"  # step 6's fault drill: product reads the walkthrough's probe marks
DRILL_HEADER = "x-strangler-drill"
OVERRIDE_HEADER = "x-strangler-canary"  # `always`: the candidate serves (step 5's traced request)
COHORT_HEADER = "x-strangler-user"


# Pagination links carry the host each upstream was asked with (the shadow copy goes to the
# catalog's own address), so they differ by construction: ignored, the Diffy way.
SHADOW_IGNORE = ("next", "previous", "results[*].updated_at", "updated_at")


def demo_routes(*, monolith_url: str, catalog_url: str, shadow_percent: float = 0.0,
                ignore: tuple[str, ...] = SHADOW_IGNORE, drill_url: str | None = None) -> dict[str, Any]:
    """The demo's routing table: product reads move by weight; product writes go to whichever
    side ownership.yaml names (`writes:`), held during the flip; all else to the monolith."""
    products: dict[str, Any] = {
        "name": PRODUCTS,
        "match": {"prefix": "/api/products"},
        "backends": {"monolith": 100, "catalog": 0},
        "cohort": {"cookie": "sessionid"},
        "writes": "catalog",
        "identity": True,  # the catalog trusts the router's signed identity for staff writes
        "fallback": "monolith",
        "shadow": {"to": "catalog", "percent": shadow_percent, "ignore": list(ignore),
                   "queue": 1000},
        "override": {"header": OVERRIDE_HEADER, "candidate": "catalog"},
    }
    upstreams = {"monolith": {"url": monolith_url, "read_timeout": 30},
                 "catalog": {"url": catalog_url, "read_timeout": 30}}
    routes: list[dict[str, Any]] = [products, {"name": "monolith", "match": {"prefix": "/"},
                                               "backends": {"monolith": 100}}]
    if drill_url is not None:
        # only requests carrying the drill header match: users never meet the failing copy
        upstreams["catalog_drill"] = {"url": drill_url, "read_timeout": 30}
        routes.insert(0, {"name": DRILL, "match": {"prefix": "/api/products", "methods": ["GET"],
                                                   "header": {"name": DRILL_HEADER, "value": "1"}},
                          "backends": {"monolith": 100, "catalog_drill": 0}, "cohort": {"cookie": "sessionid"}})
    return {
        "version": 1,
        "ledger": "ledger.jsonl",
        "ownership": "ownership.yaml",
        "identity": {"upstream": "monolith", "path": "/api/whoami/", "cookie": "sessionid"},
        "upstreams": upstreams,
        "routes": routes,
    }


def write_yaml(path: Path, doc: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(yaml.safe_dump(doc, sort_keys=False))
    os.replace(tmp, path)


def set_shadow(routes: Path, route: str, percent: float) -> None:
    """Turn shadowing of one route on/off in the file; the router reloads it by itself."""
    doc = yaml.safe_load(routes.read_text())
    for r in doc["routes"]:
        if r["name"] == route and "shadow" in r:
            r["shadow"]["percent"] = percent
    write_yaml(routes, doc)


def in_flight(monolith: str, catalog: str, pairs: Sequence[Mapping[str, Any]], *, host: str,
              tries: int = 3, pause: float = 0.5) -> int:
    """How many of the router's differing shadow pairs (its status `pairs`) were in flight:
    the same safe read asked again of both sides now (the stream caught up) answers alike
    under the shadow's rules. One that still differs after `tries` counts against the copy."""
    from router.diff import Response, compare

    agreed = 0
    with httpx.Client(timeout=10, headers={"Host": host}) as client:
        for pair in pairs:
            if pair.get("method") not in ("GET", "HEAD"):
                continue
            for attempt in range(tries):
                a, b = (client.request(str(pair["method"]), base + str(pair["path"])) for base in (monolith, catalog))
                if not compare(*(Response(r.status_code, dict(r.headers), r.content) for r in (a, b)),
                               ignore=SHADOW_IGNORE):
                    agreed += 1
                    break
                time.sleep(pause * (attempt + 1))  # traffic edits prices meanwhile: ask again
    return agreed


# -- traffic ---------------------------------------------------------------------------------

class Traffic:
    """`strangler traffic` against the router, as a child process stopped with SIGINT."""

    def __init__(self, *, base_url: str, rate: float, log: Path, env: dict[str, str],
                 pidfile: Path | None = None) -> None:
        self.pidfile = pidfile
        # until stopped; every seeded customer (20 in `small`) is its own sticky cohort
        self.argv = [sys.executable, "-m", "cli.main", "traffic", base_url, "--rate", f"{rate:g}",
                     "--duration", "0", "--customers", "20", "--anonymous", "4", "--json"]
        self.log = log
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self._out = log.with_suffix(".json")

    def start(self) -> None:
        with self.log.open("ab") as err_fh, self._out.open("wb") as out_fh:
            self.proc = subprocess.Popen(self.argv, stdout=out_fh, stderr=err_fh, env=self.env,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        if self.pidfile is not None:  # so that `walkthrough --reset` finds it after a crash
            self.pidfile.write_text(str(self.proc.pid))
        time.sleep(0.5)
        if self.proc.poll() is not None:
            raise ControlError(f"the traffic generator exited at once (code {self.proc.returncode}); "
                           f"see {self.log}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 30.0) -> dict[str, Any]:
        """Stop it and return its summary (requests, failures, ...)."""
        if self.proc is None:
            return {}
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
                raise ControlError(f"the traffic generator did not stop in {timeout:.0f}s; see {self.log}") from None
        if self.pidfile is not None:
            self.pidfile.unlink(missing_ok=True)
        text = self._out.read_text().strip()
        try:
            return dict(json.loads(text)) if text else {}
        except ValueError as exc:
            raise ControlError(f"the traffic generator printed no JSON summary; see {self.log}") from exc


def traffic_totals(summary: dict[str, Any]) -> tuple[int, int, list[dict[str, Any]]]:
    """(requests sent, failed requests, listed failures) from the generator's JSON summary."""
    total = summary.get("totals") or summary.get("summary") or summary
    requests = int(total.get("requests", 0))
    failed = int(total.get("failed", total.get("errors", total.get("failures_total", 0))) or 0)
    failures = summary.get("failures") or []
    if isinstance(failures, int):
        failed, failures = max(failed, failures), []
    return requests, failed, list(failures)


# -- the observed split over time -------------------------------------------------------------

@dataclass
class SplitSampler:
    """Polls the router's cumulative counts; keeps (seconds, requests per backend) per interval."""

    api: RouterAPI
    route: str = PRODUCTS
    every: float = 1.0
    samples: list[tuple[float, dict[str, int]]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="split-sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        before: dict[str, int] | None = None
        api = RouterAPI(self.api.base_url, token=self.api.token)
        try:
            while not self._stop.is_set():
                try:
                    _, snaps = snapshots(api.status(), self.route)
                except ControlError:
                    snaps = {}
                now = {b: s.requests for b, s in snaps.items()}
                if before is not None and now:
                    delta = {b: max(0, n - before.get(b, 0)) for b, n in now.items()}
                    self.samples.append((round(time.monotonic() - self._t0, 1), delta))
                if now:
                    before = now
                self._stop.wait(self.every)
        finally:
            api.close()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def elapsed(self) -> float:
        return round(time.monotonic() - self._t0, 1)

    def deltas_since(self, t: float) -> list[dict[str, int]]:
        """The per-interval counts sampled after `t` (an `elapsed()` reading)."""
        return [d for at, d in list(self.samples) if at > t]

    def recent_share(self, backend: str, seconds: float = 5.0) -> float | None:
        if not self.samples:
            return None
        horizon = self.samples[-1][0] - seconds
        recent = [d for t, d in self.samples if t >= horizon]
        total = sum(sum(d.values()) for d in recent)
        return sum(d.get(backend, 0) for d in recent) / total if total else None

    def timeline(self, buckets: int = 8) -> list[dict[str, Any]]:
        """The split in `buckets` equal slices of the run: seconds, requests, share per backend."""
        if not self.samples:
            return []
        end = self.samples[-1][0]
        width = max(end / buckets, 1.0)
        rows: list[dict[str, Any]] = []
        for i in range(buckets):
            lo, hi = i * width, (i + 1) * width
            part = [d for t, d in self.samples if lo < t <= hi or (i == 0 and t <= hi)]
            if not part:
                continue
            totals: dict[str, int] = {}
            for d in part:
                for b, n in d.items():
                    totals[b] = totals.get(b, 0) + n
            n = sum(totals.values())
            if not n:
                continue  # no request in this slice (a busy machine paused the traffic): no split to show
            rows.append({"from_s": round(lo), "to_s": round(hi), "requests": n,
                         "share": {b: (c / n if n else 0.0) for b, c in totals.items()}})
        return rows
