"""A two-sided SQLite shop for `strangler own` tests: a monolith and a catalog database, the
forward stream (catalog) and the catalog's out-stream (catalog_reverse) declared, an
ownership.yaml, and helpers to run `strangler cdc run` and `strangler own` as processes.

The reverse stream writes into a scratch copy, not back into the monolith: until its sink
marks its writes (another piece of issue 11), two SQLite streams in a loop would echo. The
procedure under test only needs it running and capturing.
"""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]

MONOLITH = [
    "CREATE TABLE catalog_category (id INTEGER PRIMARY KEY, name TEXT NOT NULL)",
    "CREATE TABLE catalog_product (id INTEGER PRIMARY KEY, name TEXT NOT NULL, price INTEGER NOT NULL, "
    "stock_count INTEGER NOT NULL DEFAULT 0)",
    "CREATE TABLE catalog_pricehistory (id INTEGER PRIMARY KEY, product_id INTEGER, new_price INTEGER)",
    "CREATE TABLE orders_order (id INTEGER PRIMARY KEY)",
]
CATALOG = [
    "CREATE TABLE categories (id INTEGER PRIMARY KEY, name TEXT NOT NULL)",
    "CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT NOT NULL, price INTEGER NOT NULL, "
    "stock_count INTEGER NOT NULL DEFAULT 0)",
    "CREATE TABLE price_changes (id INTEGER PRIMARY KEY, product_id INTEGER, new_price INTEGER)",
]
OWNERSHIP = """\
version: 1
groups:
  catalog:
    owner: monolith
    sides:
      monolith:
        stream: catalog
        tables: [catalog_category, catalog_product, catalog_pricehistory]
      catalog:
        stream: catalog_reverse
        tables: [categories, products, price_changes]
    keeps:
      monolith: {catalog_product: [stock_count]}
"""


def run_sql(path: Path, *statements: str, args: tuple[Any, ...] = ()) -> list[Any]:
    conn = sqlite3.connect(path, timeout=30)
    try:
        with conn:
            rows: list[Any] = []
            for s in statements:
                rows = conn.execute(s, args).fetchall()
            return rows
    finally:
        conn.close()


@dataclass
class Shop:
    root: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def monolith(self) -> Path:
        return self.root / "monolith.sqlite3"

    @property
    def catalog(self) -> Path:
        return self.root / "catalog.sqlite3"

    @property
    def streams(self) -> Path:
        return self.root / "streams.yaml"

    @property
    def ownership(self) -> Path:
        return self.root / "ownership.yaml"

    @property
    def state(self) -> Path:
        return self.root / ".strangler"

    @property
    def ledger(self) -> Path:
        return self.state / "ledger.jsonl"

    @property
    def faults(self) -> Path:
        path = self.root / "faults"
        path.mkdir(exist_ok=True)
        return path

    def create(self) -> None:
        scratch = self.root / "scratch.sqlite3"
        run_sql(self.monolith, *MONOLITH, "INSERT INTO catalog_category VALUES (1, 'tools')",
                "INSERT INTO catalog_product VALUES (1, 'hammer', 900, 5)",
                "INSERT INTO catalog_product VALUES (2, 'saw', 1500, 3)")
        run_sql(self.catalog, *CATALOG)
        run_sql(scratch, *MONOLITH)
        self.ownership.write_text(OWNERSHIP)
        pairs = {"catalog_category": "categories", "catalog_product": "products",
                 "catalog_pricehistory": "price_changes"}
        self.streams.write_text(yaml.safe_dump({"version": 1, "streams": {
            "catalog": {"source": {"url": f"sqlite:///{self.monolith}"},
                        "target": {"url": f"sqlite:///{self.catalog}"}, "tables": pairs},
            "catalog_reverse": {"source": {"url": f"sqlite:///{self.catalog}"},
                                "target": {"url": f"sqlite:///{scratch}"},
                                "tables": {v: k for k, v in pairs.items()}},
        }}))

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if k not in ("STRANGLER_ADMIN_TOKEN", "STRANGLER_ROUTER_URL", "STRANGLER_CDC_FAULTS")}
        return {**env, "STRANGLER_STATE_DIR": str(self.state), "PYTHONPATH": str(REPO), **extra}

    def start(self, stream: str) -> None:
        log = open(self.root / f"{stream}.log", "ab")  # noqa: SIM115 - closed with the process
        self.procs[stream] = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "cdc", "run", stream, "--streams", str(self.streams)],
            cwd=self.root, env=self.env(), stdout=log, stderr=log)

    def wait_streaming(self, *streams: str, timeout: float = 60) -> None:
        import json

        deadline = time.monotonic() + timeout
        for s in streams:
            path = self.state / "cdc" / f"{s}.json"
            while True:
                try:
                    if json.loads(path.read_text()).get("state") == "streaming":
                        break
                except (OSError, ValueError):
                    pass
                if time.monotonic() > deadline or self.procs[s].poll() is not None:
                    raise AssertionError(f"stream {s} never streamed: {(self.root / f'{s}.log').read_text()[-2000:]}")
                time.sleep(0.05)

    def stop(self, stream: str) -> None:
        p = self.procs.pop(stream)
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            p.wait(30)

    def stop_all(self) -> None:
        for s in list(self.procs):
            self.stop(s)

    def own(self, *args: str, env: dict[str, str] | None = None, timeout: float = 120,
            wait: bool = True) -> Any:
        """`strangler own ARGS`: in this process (Typer's runner) unless it needs its own
        environment (fault points) or must run alongside (wait=False)."""
        tail = ["--streams", str(self.streams), "--routes", str(self.root / "routes.yaml")]
        if env is None and wait:
            from typer.testing import CliRunner

            from cli.main import app

            r = CliRunner().invoke(app, ["own", *args, *tail], env={
                "STRANGLER_STATE_DIR": str(self.state), "STRANGLER_ADMIN_TOKEN": None,
                "STRANGLER_ROUTER_URL": None, "COLUMNS": "250"})
            if r.exception is not None and not isinstance(r.exception, SystemExit):
                raise r.exception
            return subprocess.CompletedProcess(["own", *args], r.exit_code, r.stdout, r.stderr)
        argv = [sys.executable, "-m", "cli.main", "own", *args, *tail]
        if not wait:
            return subprocess.Popen(argv, cwd=self.root, env=env or self.env(),
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        return subprocess.run(argv, cwd=self.root, env=env or self.env(), capture_output=True,
                              text=True, timeout=timeout)

    def fingerprint(self) -> dict[str, Any]:
        """What a refused `own` must leave alone: ownership.yaml's bytes, guards, the ledger."""
        import ownership
        from cdc.guard import guard_state

        g = ownership.load(self.ownership).group("catalog")
        return {"ownership": hashlib.sha256(self.ownership.read_bytes()).hexdigest(),
                "guards": {"monolith": guard_state(f"sqlite:///{self.monolith}", g, "monolith"),
                           "catalog": guard_state(f"sqlite:///{self.catalog}", g, "catalog")},
                "ledger": self.ledger.read_bytes() if self.ledger.exists() else b""}
