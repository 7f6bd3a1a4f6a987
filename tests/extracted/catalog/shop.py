"""The monolith and the catalog service side by side over the same data, for contract tests.

- `Shop`: the monolith migrated, seeded (small) and served by its real server
  (`python -m monolith serve`, uvicorn) on a free loopback port, on SQLite or PostgreSQL.
- `load_via_cdc()`: the ONE data-loading step for the service — the CDC engine's initial
  snapshot of the `catalog` stream declared in `streams.yaml`, from the monolith's tables
  into the service's own schema (decimal price -> cents and so on). No second seeding.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

import httpx

from devstack import free_port

REPO = Path(__file__).resolve().parents[3]
STREAMS = REPO / "streams.yaml"
HOST = "testserver"  # both sides see the same Host, so pagination links compare equal


def _manage(env: dict[str, str], *args: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "monolith", *args], env=env, cwd=REPO,
        capture_output=True, text=True, timeout=240,
    )
    if done.returncode != 0:
        raise RuntimeError(f"python -m monolith {' '.join(args)} failed:\n{done.stderr[-3000:]}")


@contextmanager
def shop(database_url: str, *, size: str = "small") -> Iterator[httpx.Client]:
    """The seeded monolith served on loopback; a client that sends `Host: testserver`."""
    env = {**os.environ, "DATABASE_URL": database_url, "PYTHONUNBUFFERED": "1"}
    _manage(env, "migrate", "--noinput", "-v", "0")
    _manage(env, "seed", "--size", size)
    add_edge_cases(database_url)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "monolith", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Host": HOST}, timeout=30)
    try:
        _wait_until_up(client, proc)
        yield client
    finally:
        client.close()
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# The small seed has no product out of stock, no '%' in a name, few price ties: make some,
# so every filter and ordering has rows on both sides of its edge.
EDGE_CASES = [
    "UPDATE catalog_product SET stock_count = 0 WHERE id % 7 = 0",
    "UPDATE catalog_product SET price = 10.00 WHERE id BETWEEN 10 AND 40",
    "UPDATE catalog_product SET name = '100% Cotton_Mug' WHERE id IN (3, 4)",
    "UPDATE catalog_product SET description = 'Ünïcode, \"quoted\", back\\slash' WHERE id = 5",
    "UPDATE catalog_product SET is_active = false WHERE id % 11 = 0",
]
# Price changes (the seed makes none): two at the same instant to exercise the -id tie-break.
PRICE_CHANGES = [
    (1, 1, "9.99", "12.50", 1, "2022-03-01 10:00:00"),
    (2, 1, "12.50", "11.00", None, "2022-04-01 10:00:00.250000"),
    (3, 1, "11.00", "10.00", 2, "2022-04-01 10:00:00.250000"),
    (4, 7, "5.00", "6.00", 1, "2023-01-01 00:00:00"),
]


def add_edge_cases(database_url: str) -> None:
    from sqlalchemy import text

    from extracted.kit.db import make_engine  # psycopg2 for postgresql:// URLs

    engine = make_engine(database_url)
    try:
        zone = "+00" if engine.dialect.name == "postgresql" else ""
        with engine.begin() as conn:
            for statement in EDGE_CASES:
                conn.execute(text(statement))
            for row_id, product, old, new, by, at in PRICE_CHANGES:
                conn.execute(
                    text("INSERT INTO catalog_pricehistory (id, product_id, old_price, new_price, "
                         "changed_by_id, changed_at) VALUES (:i, :p, :o, :n, :b, :a)"),
                    {"i": row_id, "p": product, "o": old, "n": new, "b": by, "a": at + zone},
                )
            if engine.dialect.name == "postgresql":  # rows given their ids: the shop's next one follows them
                conn.execute(text("SELECT setval(pg_get_serial_sequence('catalog_pricehistory', 'id'), "
                                  "(SELECT max(id) FROM catalog_pricehistory))"))
    finally:
        engine.dispose()


def _wait_until_up(client: httpx.Client, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise RuntimeError(f"the monolith server exited with {proc.returncode}:\n{err[-3000:]}")
        try:
            if client.get("/api/categories/").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError("the monolith server did not answer within 60 s")


def catalog_stream(*, monolith_url: str, catalog_url: str) -> Any:
    """The `catalog` stream of `streams.yaml` as written, pointed at these two databases.

    Only the slot/publication names are made unique: one PostgreSQL server hosts several
    tests, and slot names are server-wide.
    """
    from cdc import config as cdc_config

    env = {"MONOLITH_DATABASE_URL": monolith_url, "CATALOG_DATABASE_URL": catalog_url}
    with mock.patch.dict(os.environ, env):
        cfg = cdc_config.load(STREAMS).stream("catalog")
    suffix = uuid.uuid4().hex[:8]
    return dataclasses.replace(cfg, slot=f"catalog_test_{suffix}", publication=f"catalog_test_{suffix}")


def run_stream(cfg: Any, *, until: Callable[[], bool]) -> None:
    """Run the CDC pipeline (initial snapshot first if the stream is new) until `until()`."""
    from cdc.pipeline import Pipeline

    Pipeline(cfg, on_tick=lambda _metrics: None).run(until=until)


def drop_stream(cfg: Any) -> None:
    from cdc.sources import make_source

    source = make_source(cfg, [t.source for t in cfg.tables])
    try:
        source.drop()
    finally:
        source.close()


def load_via_cdc(*, monolith_url: str, catalog_url: str) -> None:
    """Copy the monolith's catalog tables into the service's schema with the CDC snapshot:
    run the pipeline until its initial snapshot is applied, then drop the stream."""
    cfg = catalog_stream(monolith_url=monolith_url, catalog_url=catalog_url)
    run_stream(cfg, until=lambda: True)
    drop_stream(cfg)
