"""CDC speed, PostgreSQL -> PostgreSQL, measured side by side in one run; prints ONE JSON line.

    python benchmarks/cdc.py [--rows 100000] [--snapshot-rows 200000] [--verify-rows 1000000]
                             [--lag-seconds 10] [--rounds 2]

Measurements (one function each, so other transports can add theirs to the same run):
  raw_read_rows_per_s   psycopg2 reading pgoutput with minimal decoding (the Python-side limit)
  direct_rows_per_s     the whole pipeline (decode, map, convert, upsert, checkpoint) on the
                        same workload, raw and direct alternating `--rounds` times (best each)
  snapshot_rows_per_s   the initial copy inside the exported snapshot
  lag_p50_ms/lag_p99_ms commit-to-applied at a steady 1,000 rows/s
  verify_rows_per_s     `verify` over two equal tables of --verify-rows rows
Targets (issue 4): direct >= 20,000 rows/s, ratio >= 0.25, lag p99 < 1 s, verify >= 100,000.
Needs only the PostgreSQL server binaries (Debian: apt-get install postgresql).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg2  # noqa: E402
import psycopg2.extras  # noqa: E402

from cdc.config import parse  # noqa: E402
from cdc.pipeline import Pipeline, open_stream  # noqa: E402
from cdc.verify import verify_stream  # noqa: E402
from devstack import PostgresServer  # noqa: E402

TABLE = "CREATE TABLE {name} (id bigint PRIMARY KEY, qty int, label text, price numeric(10,2))"
FILL = ("INSERT INTO {name} SELECT g, g % 1000, 'item ' || g, (g % 10000) / 100.0 "
        "FROM generate_series({lo}, {hi}) g")


def sql(dsn: str, *statements: str) -> list[Any]:
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    out: list[Any] = []
    with conn.cursor() as cur:
        for s in statements:
            cur.execute(s)
            out = cur.fetchall() if cur.description else []
    conn.close()
    return out


def stream(src: str, tgt: str, name: str = "bench", **extra: Any) -> Any:
    spec = {"source": {"url": src}, "target": {"url": tgt}, "batch_size": 5000,
            "snapshot_chunk": 20000, "tables": {"items": "items"}, **extra}
    return parse({"streams": {name: spec}}).stream(name)


def fresh_pair(pg: PostgresServer, tag: str) -> tuple[str, str]:
    src, tgt = pg.create_database(f"bsrc_{tag}"), pg.create_database(f"btgt_{tag}")
    sql(src, TABLE.format(name="items"))
    sql(tgt, TABLE.format(name="items"))
    return src, tgt


def _split_tuple(buf: bytes, pos: int) -> list[str | None]:
    ncols = int.from_bytes(buf[pos:pos + 2], "big")
    pos += 2
    out: list[str | None] = []
    for _ in range(ncols):
        kind = buf[pos]
        pos += 1
        if kind == 116:  # 't'
            n = int.from_bytes(buf[pos:pos + 4], "big")
            out.append(buf[pos + 4:pos + 4 + n].decode())
            pos += 4 + n
        else:
            out.append(None)
    return out


def measure_raw_read(pg: PostgresServer, rows: int) -> float:
    """Rows/s reading one committed transaction of `rows` inserts from a pgoutput slot."""
    src, _ = fresh_pair(pg, "raw")
    sql(src, "CREATE PUBLICATION p_raw FOR TABLE items")
    conn = psycopg2.connect(src, connection_factory=psycopg2.extras.LogicalReplicationConnection)
    cur = conn.cursor()
    cur.create_replication_slot("s_raw", output_plugin="pgoutput")
    sql(src, FILL.format(name="items", lo=1, hi=rows))
    start = time.perf_counter()  # like the pipeline: from asking the slot until the last row
    cur.start_replication(slot_name="s_raw", decode=False,
                          options={"proto_version": "1", "publication_names": "p_raw"})
    seen = 0
    while True:
        msg = cur.read_message()
        if msg is None:
            import select

            select.select([conn], [], [], 1.0)
            continue
        kind = msg.payload[0]
        if kind == 73:  # 'I': minimal decoding: split the tuple into column texts, no types
            seen += 1
            _split_tuple(msg.payload, 6)
        elif kind == 67 and seen >= rows:
            break
    elapsed = time.perf_counter() - start
    cur.send_feedback(flush_lsn=msg.data_start, force=True)
    conn.close()
    sql(src, "SELECT pg_drop_replication_slot('s_raw')")
    return rows / elapsed


def measure_direct(pg: PostgresServer, rows: int, tag: str = "direct") -> float:
    """Rows/s through the whole direct pipeline for the same workload (slot created first)."""
    src, tgt = fresh_pair(pg, tag)
    cfg = stream(src, tgt, name=f"b_{tag}")
    pipe = Pipeline(cfg, on_tick=lambda m: None)
    pipe.run(until=lambda: pipe.metrics.state == "streaming")  # slot + empty copy
    sql(src, FILL.format(name="items", lo=1, hi=rows))
    pipe = Pipeline(cfg, on_tick=lambda m: None)
    started: list[float] = []

    def done() -> bool:  # first called once the pipeline is set up: time from there
        if not started:
            started.append(time.perf_counter())
        return pipe.metrics.events >= rows

    pipe.run(until=done)
    elapsed = time.perf_counter() - started[0]
    _drop_slot(src, cfg.slot)
    return rows / elapsed


def measure_snapshot(pg: PostgresServer, rows: int) -> float:
    src, tgt = fresh_pair(pg, "snap")
    sql(src, FILL.format(name="items", lo=1, hi=rows))
    cfg = stream(src, tgt, name="b_snap")
    pipe = Pipeline(cfg, on_tick=lambda m: None)
    start = time.perf_counter()
    pipe.run(until=lambda: pipe.metrics.state == "streaming")
    elapsed = time.perf_counter() - start
    _drop_slot(src, cfg.slot)
    return rows / elapsed


def measure_lag(pg: PostgresServer, seconds: float, rate: int = 1000) -> tuple[float, float]:
    """Commit-to-applied lag (ms) while a producer commits `rate` rows/s in small transactions."""
    src = pg.create_database("bsrc_lag")
    tgt = pg.create_database("btgt_lag")
    sql(src, "CREATE TABLE ticks (id bigint PRIMARY KEY, sent_ms double precision)")
    sql(tgt, "CREATE TABLE ticks (id bigint PRIMARY KEY, sent_ms double precision, "
             "applied_ms double precision DEFAULT extract(epoch FROM clock_timestamp()) * 1000)")
    cfg = parse({"streams": {"b_lag": {"source": {"url": src}, "target": {"url": tgt},
                                       "tables": {"ticks": "ticks"}}}}).stream("b_lag")
    pipe = Pipeline(cfg, on_tick=lambda m: None)
    runner = threading.Thread(target=pipe.run)
    runner.start()
    while pipe.metrics.state != "streaming":
        time.sleep(0.05)
    conn = psycopg2.connect(src)
    cur = conn.cursor()
    per_tx = 10  # 100 commits/s of 10 rows
    n = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(per_tx):
            n += 1
            cur.execute("INSERT INTO ticks VALUES (%s, extract(epoch FROM clock_timestamp()) * 1000)", (n,))
        conn.commit()
        next_at = start + n / rate
        time.sleep(max(0.0, next_at - time.perf_counter()))
    conn.close()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and sql(tgt, "SELECT count(*) FROM ticks")[0][0] < n:
        time.sleep(0.1)
    pipe.stop()
    runner.join()
    lags = sorted(r[0] for r in sql(tgt, "SELECT applied_ms - sent_ms FROM ticks"))
    _drop_slot(src, cfg.slot)
    return statistics.median(lags), lags[min(len(lags) - 1, int(len(lags) * 0.99))]


def measure_verify(pg: PostgresServer, rows: int) -> float:
    src, tgt = fresh_pair(pg, "verify")
    sql(src, FILL.format(name="items", lo=1, hi=rows), "ANALYZE items")
    sql(tgt, FILL.format(name="items", lo=1, hi=rows), "ANALYZE items")
    cfg = stream(src, tgt, name="b_verify")
    source, engine, mappings = open_stream(cfg)
    source.close()
    engine.dispose()
    s, t = psycopg2.connect(src), psycopg2.connect(tgt)
    start = time.perf_counter()
    diffs = verify_stream(cfg, mappings, s, t, chunk=50_000)
    elapsed = time.perf_counter() - start
    s.close()
    t.close()
    assert all(d.equal for d in diffs), "verify found differences between equal tables"
    return rows / elapsed


def _drop_slot(dsn: str, slot: str) -> None:
    for _ in range(100):  # the walsender exits shortly after the pipeline closes its connection
        if not sql(dsn, f"SELECT 1 FROM pg_replication_slots WHERE slot_name = '{slot}' AND active"):
            break
        time.sleep(0.05)
    sql(dsn, f"SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '{slot}'")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--snapshot-rows", type=int, default=200_000)
    ap.add_argument("--verify-rows", type=int, default=1_000_000)
    ap.add_argument("--lag-seconds", type=float, default=10.0)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    with PostgresServer() as pg:
        raw, direct = [], []
        for i in range(args.rounds):  # alternate, so machine noise hits both alike
            print(f"round {i + 1}: raw read", file=sys.stderr)
            raw.append(measure_raw_read(pg, args.rows))
            print(f"round {i + 1}: direct pipeline", file=sys.stderr)
            direct.append(measure_direct(pg, args.rows, tag=f"direct{i}"))
        print("snapshot", file=sys.stderr)
        snap = measure_snapshot(pg, args.snapshot_rows)
        print("lag at 1,000 rows/s", file=sys.stderr)
        p50, p99 = measure_lag(pg, args.lag_seconds)
        print("verify", file=sys.stderr)
        ver = measure_verify(pg, args.verify_rows)
    result = {
        "rows": args.rows,
        "raw_read_rows_per_s": round(max(raw)),
        "direct_rows_per_s": round(max(direct)),
        "ratio_direct_vs_raw": round(max(direct) / max(raw), 3),
        "snapshot_rows_per_s": round(snap),
        "lag_p50_ms": round(p50, 1),
        "lag_p99_ms": round(p99, 1),
        "verify_rows_per_s": round(ver),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
