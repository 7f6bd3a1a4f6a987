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
  kafka_rows_per_s      the same workload through Kafka (benchmarks/cdc_kafka.py), in the rounds
  kafka_lag_p50_ms/kafka_lag_p99_ms   commit-to-applied through Kafka at 1,000 rows/s
  reverse_rows_per_s    the way back (issue 11): catalog -> monolith shape (cents -> decimal,
                        dropped columns, a column the target keeps), under ownership.yaml, in
                        the same rounds as direct; ratio_reverse_vs_direct against it
  reverse_lag_p50_ms/reverse_lag_p99_ms   commit-to-applied of that shape at 1,000 rows/s
Both direct directions run with an ownership group declared (benchmarks/cdc.py `owned`): the
sink applies its rules and records every key for the dual-write detector, as in production.
`--before TREE` instead alternates this file's direct and reverse measurements run on the
code of TREE (e.g. `git archive d1d3c40 | tar -x -C /tmp/before`) and on this tree, each in a
fresh process, and prints before/after figures.
Targets (issue 4): direct >= 20,000 rows/s, ratio >= 0.25, lag p99 < 1 s, verify >= 100,000.
Needs only the PostgreSQL server binaries (Debian: apt-get install postgresql).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml

# STRANGLER_BENCH_TREE: measure another checkout's code with this file's workloads (--before)
TREE = os.environ.get("STRANGLER_BENCH_TREE") or str(Path(__file__).resolve().parents[1])
sys.path.insert(0, TREE)

import psycopg2  # noqa: E402
import psycopg2.extras  # noqa: E402
from cdc_kafka import measure_kafka, measure_kafka_lag  # noqa: E402  (the Kafka path, same run)

sys.path.insert(0, TREE)  # cdc_kafka put this checkout first: TREE's code wins again

from cdc.config import parse  # noqa: E402
from cdc.pipeline import Pipeline, open_stream  # noqa: E402
from cdc.verify import verify_stream  # noqa: E402
from devstack import KafkaServer, PostgresServer  # noqa: E402

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


# The reverse stream's shape (streams.yaml catalog_reverse: products -> catalog_product):
# the service stores cents and a generated slug; the monolith a decimal price and a stock
# count only it writes (kept: the reverse sink never updates it, the reverse stream drops it).
REV_TABLE = ("CREATE TABLE {name} (id bigint PRIMARY KEY, qty int, label text, price_cents bigint, "
             "slug text)")
REV_FILL = ("INSERT INTO {name} SELECT g, g % 1000, 'item ' || g, g % 10000, 'item-' || g "
            "FROM generate_series({lo}, {hi}) g")
REV_TABLES = {"products": {"target": "items", "columns": {
    "id": "id", "label": "label", "price_cents": {"to": "price", "convert": "cents_to_decimal"}},
    "drop": ["qty", "slug"]}}
_OWN_DIR = tempfile.mkdtemp(prefix="strangler-bench-own-")


def owned(name: str, *, reverse: bool, source_table: str = "items", target_table: str = "items") -> str:
    """An ownership file with one group whose side `name` owns: the forward stream's (the
    monolith side) or, `reverse`, the service side's; the monolith keeps its qty column.
    Code before issue 11 ignores the file (`--before`)."""
    other = f"{name}_other"
    mono, svc = ((other, target_table), (name, source_table)) if reverse else \
        ((name, source_table), (other, target_table))
    group: dict[str, Any] = {"owner": "catalog" if reverse else "monolith",
                             "sides": {"monolith": {"stream": mono[0], "tables": [mono[1]]},
                                       "catalog": {"stream": svc[0], "tables": [svc[1]]}}}
    if mono[1] == "items":  # the shape with a stock-like column
        group["keeps"] = {"monolith": {"items": ["qty"]}}
    doc = {"version": 1, "groups": {"bench": group}}
    path = Path(_OWN_DIR) / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def stream(src: str, tgt: str, name: str = "bench", tables: Any = None, ownership: str | None = None,
           **extra: Any) -> Any:
    spec = {"source": {"url": src}, "target": {"url": tgt}, "batch_size": 5000,
            "snapshot_chunk": 20000, "tables": tables or {"items": "items"}, **extra}
    # never the repository's ownership.yaml (parse() looks beside the streams file by default)
    own = ownership or str(Path(_OWN_DIR) / "none.yaml")
    return parse({"streams": {name: spec}, "ownership": own}).stream(name)


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


def measure_direct(pg: PostgresServer, rows: int, tag: str = "direct", *, reverse: bool = False) -> float:
    """Rows/s through the whole direct pipeline for the same workload (slot created first);
    `reverse`: the catalog -> monolith shape (REV_*), its side owning the table."""
    name = f"b_{tag}"
    if reverse:
        src, tgt = pg.create_database(f"bsrc_{tag}"), pg.create_database(f"btgt_{tag}")
        sql(src, REV_TABLE.format(name="products"))
        sql(tgt, TABLE.format(name="items"))
        cfg = stream(src, tgt, name=name, tables=REV_TABLES,
                     ownership=owned(name, reverse=True, source_table="products"))
    else:
        src, tgt = fresh_pair(pg, tag)
        cfg = stream(src, tgt, name=name, ownership=owned(name, reverse=False))
    pipe = Pipeline(cfg, on_tick=lambda m: None)
    pipe.run(until=lambda: pipe.metrics.state == "streaming")  # slot + empty copy
    sql(src, (REV_FILL if reverse else FILL).format(name="products" if reverse else "items", lo=1, hi=rows))
    pipe = Pipeline(cfg, on_tick=lambda m: None)
    started: list[float] = []

    def done() -> bool:  # first called once the pipeline is set up: time from there
        if not started:
            started.append(time.perf_counter())
        return pipe.metrics.events >= rows

    pipe.run(until=done)
    elapsed = time.perf_counter() - started[0]
    _drop_slot(src, cfg.slot)
    # every row applied, in the target's terms (a dead-lettered or unconverted row fails here)
    n, total = sql(tgt, "SELECT count(*), sum(price) FROM items")[0]
    want = sum((g % 10000) / 100 for g in range(1, rows + 1))
    assert n == rows and abs(float(total) - want) < 0.01, f"{tag}: {n} rows, price sum {total} != {want:.2f}"
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


def measure_lag(pg: PostgresServer, seconds: float, rate: int = 1000, *,
                reverse: bool = False) -> tuple[float, float]:
    """Commit-to-applied lag (ms) while a producer commits `rate` rows/s in small transactions;
    `reverse`: the catalog -> monolith shape (cents -> decimal, a dropped column), owned."""
    tag = "lag_rev" if reverse else "lag"
    src = pg.create_database(f"bsrc_{tag}")
    tgt = pg.create_database(f"btgt_{tag}")
    extra = ", price_cents bigint DEFAULT 1999, slug text DEFAULT 'tick'" if reverse else ""
    sql(src, f"CREATE TABLE ticks (id bigint PRIMARY KEY, sent_ms double precision{extra})")
    sql(tgt, f"CREATE TABLE ticks (id bigint PRIMARY KEY, sent_ms double precision, "
             f"{'price numeric(10,2), ' if reverse else ''}"
             "applied_ms double precision DEFAULT extract(epoch FROM clock_timestamp()) * 1000)")
    tables: dict[str, Any] = {"ticks": {"columns": {
        "id": "id", "sent_ms": "sent_ms", "price_cents": {"to": "price", "convert": "cents_to_decimal"}},
        "drop": ["slug"]}} if reverse else {"ticks": "ticks"}
    name = f"b_{tag}"
    cfg = parse({"streams": {name: {"source": {"url": src}, "target": {"url": tgt}, "tables": tables}},
                 "ownership": owned(name, reverse=reverse, source_table="ticks",
                                    target_table="ticks")}).stream(name)
    pipe = Pipeline(cfg, on_tick=lambda m: None)
    runner = threading.Thread(target=pipe.run)
    runner.start()
    while pipe.metrics.state != "streaming":
        time.sleep(0.05)
    conn = psycopg2.connect(src)
    cur = conn.cursor()
    # As on a production server: commits flush WAL at once (the throwaway server runs with
    # synchronous_commit=off, where the WAL writer flushes, and decoding starts, every 200 ms).
    cur.execute("SET synchronous_commit = on")
    conn.commit()
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


def worker(kind: str, rows: int, tag: str) -> None:
    """One measurement on an existing server (STRANGLER_PG_DSN), on TREE's code; prints rows/s."""
    pg = PostgresServer().start()
    print(json.dumps({"rows_per_s": measure_direct(pg, rows, tag, reverse=kind == "reverse")}))


def compare_before(before: str, rows: int, rounds: int) -> dict[str, Any]:
    """Direct and reverse rows/s on the `before` tree's code and this one's, alternating, each
    measurement in a fresh process (imports and caches alike); best of the rounds."""
    here = str(Path(__file__).resolve().parents[1])
    best: dict[str, float] = {}
    with PostgresServer() as pg:
        for i in range(rounds):
            for kind in ("direct", "reverse"):
                for label, tree in (("before", before), ("after", here)):
                    print(f"round {i + 1}: {kind} on {label} ({tree})", file=sys.stderr)
                    env = {**os.environ, "STRANGLER_BENCH_TREE": tree, "STRANGLER_PG_DSN": pg.dsn}
                    proc = subprocess.run([sys.executable, __file__, "--worker", kind, "--rows", str(rows),
                                           "--tag", f"{label}_{kind}{i}"], env=env, cwd=tree,
                                          capture_output=True, text=True, check=False, timeout=600)
                    if proc.returncode != 0:
                        raise SystemExit(f"{kind} on {tree} failed:\n{proc.stderr[-2000:]}")
                    value = float(json.loads(proc.stdout.strip().splitlines()[-1])["rows_per_s"])
                    key = f"{label}_{kind}_rows_per_s"
                    best[key] = max(best.get(key, 0.0), value)
    out: dict[str, Any] = {"rows": rows, "rounds": rounds, "before": before}
    for kind in ("direct", "reverse"):
        b, a = best[f"before_{kind}_rows_per_s"], best[f"after_{kind}_rows_per_s"]
        out.update({f"before_{kind}_rows_per_s": round(b), f"after_{kind}_rows_per_s": round(a),
                    f"ratio_{kind}": round(a / b, 3)})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--snapshot-rows", type=int, default=200_000)
    ap.add_argument("--verify-rows", type=int, default=1_000_000)
    ap.add_argument("--lag-seconds", type=float, default=10.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--before", metavar="TREE",
                    help="compare direct and reverse rows/s with the code of another checkout")
    ap.add_argument("--worker", choices=("direct", "reverse"), help=argparse.SUPPRESS)
    ap.add_argument("--tag", default="w", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args.worker, args.rows, args.tag)
    if args.before:
        print(json.dumps(compare_before(str(Path(args.before).resolve()), args.rows, args.rounds)))
        return
    with PostgresServer() as pg, KafkaServer() as broker:
        raw, direct, kafka, reverse = [], [], [], []
        for i in range(args.rounds):  # alternate, so machine noise hits both alike
            print(f"round {i + 1}: raw read", file=sys.stderr)
            raw.append(measure_raw_read(pg, args.rows))
            print(f"round {i + 1}: direct pipeline", file=sys.stderr)
            direct.append(measure_direct(pg, args.rows, tag=f"direct{i}"))
            print(f"round {i + 1}: reverse pipeline (catalog -> monolith shape)", file=sys.stderr)
            reverse.append(measure_direct(pg, args.rows, tag=f"reverse{i}", reverse=True))
            print(f"round {i + 1}: Kafka pipeline", file=sys.stderr)
            kafka.append(measure_kafka(pg, broker, args.rows, tag=f"kafka{i}"))
        print("snapshot", file=sys.stderr)
        snap = measure_snapshot(pg, args.snapshot_rows)
        print("lag at 1,000 rows/s", file=sys.stderr)
        p50, p99 = measure_lag(pg, args.lag_seconds)
        print("reverse lag at 1,000 rows/s", file=sys.stderr)
        rp50, rp99 = measure_lag(pg, args.lag_seconds, reverse=True)
        print("Kafka lag at 1,000 rows/s", file=sys.stderr)
        kp50, kp99 = measure_kafka_lag(pg, broker, args.lag_seconds)
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
        "kafka_rows_per_s": round(max(kafka)),
        "kafka_lag_p50_ms": round(kp50, 1),
        "kafka_lag_p99_ms": round(kp99, 1),
        "reverse_rows_per_s": round(max(reverse)),
        "reverse_lag_p50_ms": round(rp50, 1),
        "reverse_lag_p99_ms": round(rp99, 1),
        "ratio_reverse_vs_direct": round(max(reverse) / max(direct), 3),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
