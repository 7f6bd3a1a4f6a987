"""CDC fixtures: a source and a target database on the session's PostgreSQL, a streams.yaml,
and a helper that runs `strangler cdc run` as a real process (so it can be killed -9)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg2
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]

SOURCE_DDL = """
CREATE TABLE catalog_category (id serial PRIMARY KEY, name text NOT NULL);
CREATE TABLE catalog_product (
    id serial PRIMARY KEY,
    category_id int REFERENCES catalog_category(id),
    name text NOT NULL,
    price numeric(10, 2) NOT NULL,
    description text,
    version int NOT NULL DEFAULT 1
);
"""

TARGET_DDL = """
CREATE TABLE categories (id int PRIMARY KEY, name text NOT NULL);
CREATE TABLE products (
    id int PRIMARY KEY,
    category_id int REFERENCES categories(id),
    title text NOT NULL,
    price_cents bigint NOT NULL CHECK (price_cents >= 0),
    description text,
    version int NOT NULL
);
-- every row version the sink writes, to prove nothing is applied twice
CREATE TABLE applied_log (id int, version int);
CREATE FUNCTION log_applied() RETURNS trigger AS $$
BEGIN INSERT INTO applied_log VALUES (NEW.id, NEW.version); RETURN NEW; END $$ LANGUAGE plpgsql;
CREATE TRIGGER products_applied AFTER INSERT OR UPDATE ON products
    FOR EACH ROW EXECUTE FUNCTION log_applied();
"""


def sql(dsn: str, statement: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(statement, args or None)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


def stream_spec(src: str, tgt: str, **extra: Any) -> dict[str, Any]:
    spec = {
        "owner": "tests",
        "source": {"url": src},
        "target": {"url": tgt},
        "batch_size": 500,
        "snapshot_chunk": 300,
        "tables": {
            "catalog_category": {"target": "categories"},
            "catalog_product": {
                "target": "products",
                "columns": {"id": "id", "category_id": "category_id", "name": "title",
                            "price": {"to": "price_cents", "convert": "decimal_to_cents"},
                            "description": "description", "version": "version"},
            },
        },
    }
    spec.update(extra)
    return spec


@dataclass
class Env:
    src: str
    tgt: str
    folder: Path
    streams_path: Path
    name: str = "shop"
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def write_streams(self, spec: dict[str, Any]) -> None:
        self.streams_path.write_text(yaml.safe_dump({"version": 1, "streams": {self.name: spec}}))

    def env(self) -> dict[str, str]:
        return {**os.environ, "STRANGLER_STATE_DIR": str(self.folder / "state"),
                "PYTHONPATH": str(REPO)}

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "cli.main", *args, "--streams", str(self.streams_path)],
                              cwd=REPO, env=self.env(), capture_output=True, text=True, timeout=timeout)

    @property
    def faults_dir(self) -> Path:
        """Where a run's fault points (cdc/faults.py) and the test talk through files."""
        path = self.folder / "faults"
        path.mkdir(exist_ok=True)
        return path

    def start(self, faults: str = "") -> subprocess.Popen[bytes]:
        """`cdc run` as a process; `faults` is a STRANGLER_CDC_FAULTS spec (cdc/faults.py)."""
        env = self.env()
        if faults:  # a fresh run: no .hit/.go/.count files left from an earlier one
            for old in self.faults_dir.iterdir():
                old.unlink()
            env.update(STRANGLER_CDC_FAULTS=faults, STRANGLER_CDC_FAULTS_DIR=str(self.faults_dir))
        log = open(self.folder / "run.log", "ab")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen([sys.executable, "-m", "cli.main", "cdc", "run", self.name,
                                 "--streams", str(self.streams_path)], cwd=REPO, env=env,
                                stdout=log, stderr=log)
        self.procs.append(proc)
        return proc

    def log_text(self) -> str:
        p = self.folder / "run.log"
        return p.read_text(errors="replace") if p.exists() else ""

    def stop_all(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(20)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()


@pytest.fixture
def cdc_env(pg_server: Any, tmp_path: Path) -> Iterator[Env]:
    tag = os.urandom(4).hex()
    src = pg_server.create_database(f"src_{tag}")
    tgt = pg_server.create_database(f"tgt_{tag}")
    sql(src, SOURCE_DDL)
    sql(tgt, TARGET_DDL)
    env = Env(src=src, tgt=tgt, folder=tmp_path, streams_path=tmp_path / "streams.yaml")
    env.write_streams(stream_spec(src, tgt))
    try:
        yield env
    finally:
        env.stop_all()
        # slots must not outlive the test (they would pin WAL on the shared server); a closed
        # replication connection's walsender takes a moment to let go of its slot
        for dsn in (src, tgt):
            for _ in range(100):
                rows = sql(dsn, "SELECT active FROM pg_replication_slots WHERE database = current_database()")
                if not any(r[0] for r in rows):
                    break
                time.sleep(0.1)
            sql(dsn, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                     "WHERE database = current_database() AND NOT active")


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def source_rows(src: str) -> dict[str, list[tuple[Any, ...]]]:
    """The source as the target should look: mapped columns, price in cents."""
    return {
        "categories": sql(src, "SELECT id, name FROM catalog_category ORDER BY id"),
        "products": sql(src, "SELECT id, category_id, name, (price * 100)::bigint, description, version "
                             "FROM catalog_product ORDER BY id"),
    }


def target_rows(tgt: str) -> dict[str, list[tuple[Any, ...]]]:
    return {
        "categories": sql(tgt, "SELECT id, name FROM categories ORDER BY id"),
        "products": sql(tgt, "SELECT id, category_id, title, price_cents, description, version "
                             "FROM products ORDER BY id"),
    }


def start_exporter(env: Env) -> tuple[subprocess.Popen[str], str]:
    """`strangler cdc metrics --listen 127.0.0.1:0`; its URL from the line it prints."""
    proc = subprocess.Popen([sys.executable, "-m", "cli.main", "cdc", "metrics", "--listen", "127.0.0.1:0",
                             "--streams", str(env.streams_path)], cwd=REPO, env=env.env(),
                            stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    line = proc.stderr.readline()
    match = re.search(r"(http://\S+/metrics)", line)
    if not match:
        proc.kill()
        raise AssertionError(f"the exporter did not start: {line}{proc.stderr.read()}")
    return proc, match.group(1)
