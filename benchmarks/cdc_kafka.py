"""The Kafka path of the CDC benchmark (`benchmarks/cdc.py` calls these in the same run).

Both halves run as real `strangler cdc run --part capture|apply` processes against a broker
started by devstack (or ``STRANGLER_KAFKA_BOOTSTRAP``), as they would in production:

  kafka_rows_per_s   end to end: from the commit of one source transaction of --rows inserts
                     until its last row is in the target (capture -> Kafka -> apply), on the
                     direct measurement's workload (issue 14's table, cents, ownership group)
  kafka_lag_p99_ms   commit-to-applied at a steady 1,000 rows/s (p50 too), a 2-column table,
                     synchronous_commit on

`halves` also runs the capture half alone (benchmarks/cdc_debezium.py, beside Debezium).
Alone: `python benchmarks/cdc.py --only kafka` (with the direct path, for kafka_vs_direct).

Target (issue 5): kafka_rows_per_s >= 10,000 with broker, PostgreSQL and both halves on 2 cores.
Needs Java 17 and Maven (apt-get install openjdk-17-jre-headless maven) besides PostgreSQL.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import psycopg2  # noqa: E402
import yaml  # noqa: E402
from cdc_workload import (  # noqa: E402  (issue 14's table)
    MONOLITH,
    MONOLITH_DDL,
    MONOLITH_ROW,
    SERVICE,
    SERVICE_DDL,
    check,
    produce_txn,
    wait_visible,
)

from devstack import KafkaServer, PostgresServer  # noqa: E402


@contextmanager
def halves(src: str, tgt: str, kafka: KafkaServer, tables: dict[str, Any], name: str,
           parts: tuple[str, ...] = ("apply", "capture"), transport: dict[str, Any] | None = None,
           ownership: str | None = None) -> Iterator[list[subprocess.Popen[bytes]]]:
    """`strangler cdc run --part` processes (both halves, or only those of `parts`) for a new
    stream, streaming when entered; stopped (SIGTERM) on exit, the source's slots dropped.
    `transport` adds to the stream's Kafka settings, `ownership` is its ownership file; yields
    the processes."""
    folder = Path(tempfile.mkdtemp(prefix="strangler-bench-"))
    spec = {"source": {"url": src}, "target": {"url": tgt}, "batch_size": 5000, "snapshot_chunk": 20000,
            "tables": tables, "transport": {"kind": "kafka", "bootstrap": kafka.bootstrap,
                                            "topic_prefix": f"{name}_{uuid.uuid4().hex[:6]}",
                                            **(transport or {})}}
    streams = folder / "streams.yaml"
    doc: dict[str, Any] = {"version": 1, "streams": {name: spec}}
    if ownership:
        doc["ownership"] = ownership
    streams.write_text(yaml.safe_dump(doc))
    env = {**os.environ, "STRANGLER_STATE_DIR": str(folder), "PYTHONPATH": str(REPO)}
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for part in parts:
            log = open(folder / f"{part}.log", "ab")  # noqa: SIM115 - closed with the process
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "cli.main", "cdc", "run", name, "--part", part, "--streams", str(streams)],
                cwd=REPO, env=env, stdout=log, stderr=log))
        for part, proc in zip(parts, procs, strict=True):
            _wait_streaming(folder / "cdc" / f"{name}.{part}.json", folder / f"{part}.log", proc)
        if "apply" in parts:
            time.sleep(2.0)  # the apply consumer joins its group on its first polls
        yield procs
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        _drop_slot(src)


def _wait_streaming(metrics: Path, log: Path, proc: subprocess.Popen[bytes] | None = None,
                    timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and (proc is None or proc.poll() is None):
        try:
            if json.loads(metrics.read_text()).get("state") == "streaming":
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{metrics.name} did not start streaming:\n{log.read_text()[-2000:]}")


def _sql(dsn: str, statement: str, args: tuple[Any, ...] = ()) -> list[Any]:
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(statement, args or None)
        out = cur.fetchall() if cur.description else []
    conn.close()
    return out


def _drop_slot(src: str) -> None:
    for _ in range(100):
        if not _sql(src, "SELECT 1 FROM pg_replication_slots WHERE database = current_database() AND active"):
            break
        time.sleep(0.05)
    _sql(src, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
              "WHERE database = current_database()")


def measure_kafka(pg: PostgresServer, kafka: KafkaServer, rows: int, tag: str, *,
                  tables: dict[str, Any], ownership: str | None = None) -> float:
    """Rows/s, source commit of one `rows`-row transaction -> last row applied, through Kafka,
    on issue 14's table (cdc_workload) as the direct measurement runs it: `tables` maps
    catalog_product to products (price in cents), `ownership` is its ownership file."""
    src, tgt = pg.create_database(f"bsrc_{tag}"), pg.create_database(f"btgt_{tag}")
    _sql(src, MONOLITH_DDL)
    _sql(tgt, SERVICE_DDL)
    with halves(src, tgt, kafka, tables, f"b_{tag}", ownership=ownership):
        start = produce_txn(src, MONOLITH, MONOLITH_ROW, rows)
        end = wait_visible(tgt, SERVICE, rows)
    check(tgt, SERVICE, rows, cents=True, what=f"kafka ({tag})")
    return rows / (end - start)


def measure_kafka_lag(pg: PostgresServer, kafka: KafkaServer, seconds: float,
                      rate: int = 1000) -> tuple[float, float]:
    """Commit-to-applied lag (ms) through Kafka while 1,000 rows/s arrive in 10-row transactions."""
    src, tgt = pg.create_database("bsrc_klag"), pg.create_database("btgt_klag")
    _sql(src, "CREATE TABLE ticks (id bigint PRIMARY KEY, sent_ms double precision)")
    _sql(tgt, "CREATE TABLE ticks (id bigint PRIMARY KEY, sent_ms double precision, "
              "applied_ms double precision DEFAULT extract(epoch FROM clock_timestamp()) * 1000)")
    with halves(src, tgt, kafka, {"ticks": "ticks"}, "b_klag"):
        conn = psycopg2.connect(src)
        cur = conn.cursor()
        # as in production: with the server's default (off) a commit reaches the slot only
        # when the WAL writer flushes it, up to 200 ms later (that was most of this lag)
        cur.execute("SET synchronous_commit = on")
        conn.commit()
        n = 0
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            for _ in range(10):
                n += 1
                cur.execute("INSERT INTO ticks VALUES (%s, extract(epoch FROM clock_timestamp()) * 1000)", (n,))
            conn.commit()
            time.sleep(max(0.0, start + n / rate - time.perf_counter()))
        conn.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and _sql(tgt, "SELECT count(*) FROM ticks")[0][0] < n:
            time.sleep(0.1)
    lags = sorted(r[0] for r in _sql(tgt, "SELECT applied_ms - sent_ms FROM ticks"))
    return statistics.median(lags), lags[min(len(lags) - 1, int(len(lags) * 0.99))]
