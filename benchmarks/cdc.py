"""CDC speed, PostgreSQL -> PostgreSQL, beside its peers in one run; prints ONE JSON line.

    python benchmarks/cdc.py [--quick] [--rows 100000] [--single-txns 20000]
                             [--snapshot-rows 500000] [--lag-rate 5000] [--lag-seconds 10]
                             [--mem-rows 1000000] [--verify-rows 1000000] [--rounds 2]
                             [--no-kafka] [--no-debezium] [--capture-snapshot-rows 200000]
                             [--only kafka] [--before TREE]

The workload is issue 14's (benchmarks/cdc_workload.py): a 9-column product table, the
monolith's `catalog_product` (numeric price) into the service's `products` (price in
cents, `decimal_to_cents`, as streams.yaml maps it), under an ownership group as in
production (`owned`: the sink applies its rules and records every key for the dual-write
detector). Peers and ours alternate in each of `--rounds` rounds; best of each. Every
measurement ends with the target checked: all rows there, prices converted right.

The initial copy, `--snapshot-rows` rows (one filled source for all three):
  copy_binary_rows_per_s  COPY (SELECT ..mapped..) TO STDOUT (FORMAT binary) piped into
                          COPY products FROM STDIN (FORMAT binary), committed (cdc_peers.py)
  copy_text_rows_per_s    the same in text format
  snapshot_rows_per_s     ours: a new stream's first run until it streams (mapping checked
                          against both schemas, slot with exported snapshot, chunked copy,
                          committed); ratio_snapshot_vs_copy = snapshot / copy_binary
Streaming apply, each peer already streaming, timed from the (first) commit until the last
row is visible on the target:
  native_rows_per_s       PostgreSQL's own subscriber (CREATE SUBSCRIPTION on a slot made
                          beforehand, copy_data off), one `--rows`-row transaction. It cannot
                          convert, so its target keeps the numeric price: the same rows, less work
  direct_rows_per_s       ours, the direct pipeline in a fresh process (as `strangler cdc run`),
                          same transaction, cents mapping; ratio_direct_vs_native.
                          direct_cpu_us_per_row: that process's CPU (both threads) per row
                          while it streamed, the steadier figure on a noisy machine
  native_single_txn_rows_per_s / direct_single_txn_rows_per_s   `--single-txns` one-row
                          transactions committed back to back by a procedure;
                          ratio_direct_vs_native_single_txn. single_txn_producer_rows_per_s
                          is how fast they were committed: no peer can beat it
  reverse_rows_per_s      the way back (issue 11): products -> catalog_product (cents ->
                          decimal, slug and stock_count dropped, stock_count kept by the
                          monolith), catalog owning; ratio_reverse_vs_direct
  raw_read_rows_per_s     psycopg2 reading the transaction from a pgoutput slot with minimal
                          decoding, same clock (the Python-side ceiling); ratio_direct_vs_raw
Then:
  lag_p50_ms/lag_p99_ms   commit-to-applied at a steady `--lag-rate` rows/s (10-row
                          transactions); reverse_lag_* the way back at 1,000 rows/s
  mem_peak_rss_mb         peak RSS of our pipeline's process applying ONE `--mem-rows`-row
                          transaction (ru_maxrss); mem_ready_rss_mb its RSS when it started
                          streaming. `--mem-rows 0` skips it
  verify_rows_per_s       `verify` over two equal `--verify-rows`-row tables (mapped)
  kafka_rows_per_s        through Kafka end to end (benchmarks/cdc_kafka.py: capture and apply
                          halves as processes), the direct path's workload and clock;
                          ratio_kafka_vs_direct. kafka_lag_p50_ms/p99: its own 2-column table
                          at 1,000 rows/s. `--no-kafka` skips the Kafka path and Debezium's part
Into Kafka only, ours (the capture half) beside Debezium's connector (benchmarks/
cdc_debezium.py), alternating in each round; "acknowledged" = counted in the table topic's
high watermark, for both:
  capture_rows_per_s / debezium_capture_rows_per_s   one --rows transaction, from its commit
                          until all its messages are acknowledged; ratio_capture_vs_debezium.
                          capture_cpu_us_per_row / debezium_cpu_us_per_row: each one's CPU
  capture_snapshot_rows_per_s / debezium_snapshot_rows_per_s   a new stream / connector over a
                          --capture-snapshot-rows table, from the first message acknowledged to
                          the last; ratio_snapshot_capture_vs_debezium; *_snapshot_start_s: from
                          the launch to that first message
  capture_lag_* / debezium_lag_*   commit-to-acknowledged (the broker's append time) at 1,000
                          rows/s in 10-row transactions. `--no-debezium` skips this part
The whole run takes ~9 minutes on 2 cores (~3 of them Debezium's part); `--quick`: small
sizes, one round, no Kafka, no Debezium, no memory run (under a minute). `--only kafka`: the
direct path, the Kafka path and Debezium's part alone (with their lags).
`--before TREE` instead alternates the direct and reverse apply on the code of TREE (e.g.
`git archive d1d3c40 | tar -x -C /tmp/before`) and on this tree, each in a fresh process,
and prints before/after figures.
Goals (`goals_met`): issue 14's ratio_snapshot_vs_copy >= 0.5, ratio_direct_vs_native >= 1.0
on both workloads, lag p99 < 50 ms at 5,000 rows/s (mem_peak_rss_mb not above today's); issue
13's ratio_capture_vs_debezium >= 1.5 (capture_vs_debezium) and ratio_kafka_vs_direct >= 0.5
(kafka_vs_direct).
Needs only the PostgreSQL server binaries (Debian: apt-get install postgresql), and Java 17
with Maven for Kafka, plus a JDK (javac) for Debezium.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

# STRANGLER_BENCH_TREE: measure another checkout's code with this file's workloads (--before)
HERE = str(Path(__file__).resolve().parents[1])
TREE = os.environ.get("STRANGLER_BENCH_TREE") or HERE
sys.path.insert(0, TREE)

import cdc_debezium  # noqa: E402  (our capture beside Debezium's, same run)
import psycopg2  # noqa: E402
import psycopg2.extras  # noqa: E402
from cdc_kafka import measure_kafka, measure_kafka_lag  # noqa: E402  (the Kafka path, same run)
from cdc_peers import (  # noqa: E402  (the peers, same run)
    copy_pass_through,
    drop_slot,
    native_subscriber,
    native_tables,
    wait_slot_active,
)
from cdc_workload import (  # noqa: E402  (issue 14's table)
    MONOLITH,
    MONOLITH_DDL,
    MONOLITH_ROW,
    SERVICE,
    SERVICE_DDL,
    SERVICE_ROW,
    SERVICE_SLUG_DDL,
    SERVICE_SLUG_ROW,
    check,
    fill,
    produce_single_txns,
    produce_txn,
    sql,
    wait_visible,
)

sys.path.insert(0, TREE)  # cdc_kafka put this checkout first: TREE's code wins again

import cdc.pipeline as pipeline_mod  # noqa: E402
from cdc.config import parse  # noqa: E402
from cdc.pipeline import Pipeline, open_stream  # noqa: E402
from cdc.verify import verify_stream  # noqa: E402
from devstack import KafkaServer, PostgresServer  # noqa: E402

# catalog_product -> products as streams.yaml's `catalog` stream maps it
FORWARD = {MONOLITH: {"target": SERVICE, "columns": {
    "id": "id", "name": "name", "description": "description", "category_id": "category_id",
    "price": {"to": "price_cents", "convert": "decimal_to_cents"}, "stock_count": "stock_count",
    "is_active": "is_active", "created_at": "created_at", "updated_at": "updated_at"}}}
# products -> catalog_product as `catalog_reverse` maps it
REVERSE = {SERVICE: {"target": MONOLITH, "columns": {
    "id": "id", "name": "name", "description": "description", "category_id": "category_id",
    "price_cents": {"to": "price", "convert": "cents_to_decimal"}, "is_active": "is_active",
    "created_at": "created_at", "updated_at": "updated_at"}, "drop": ["slug", "stock_count"]}}
_OWN_DIR = tempfile.mkdtemp(prefix="strangler-bench-own-")
QUICK = {"rows": 20_000, "single_txns": 5_000, "snapshot_rows": 100_000, "verify_rows": 100_000,
         "lag_seconds": 3.0, "rounds": 1, "mem_rows": 0, "kafka": False, "debezium": False,
         "capture_snapshot_rows": 50_000}
FULL = {"rows": 100_000, "single_txns": 20_000, "snapshot_rows": 500_000, "verify_rows": 1_000_000,
        "lag_seconds": 10.0, "rounds": 2, "mem_rows": 1_000_000, "kafka": True, "debezium": True,
        "capture_snapshot_rows": 200_000}


_BEGAN = time.monotonic()


def note(msg: str) -> None:
    took = int(time.monotonic() - _BEGAN)
    print(f"[{took // 60}:{took % 60:02d}] {msg}", file=sys.stderr, flush=True)


def owned(name: str, *, reverse: bool, monolith: str = MONOLITH, service: str = SERVICE,
          keeps: tuple[str, ...] = ("stock_count",)) -> str:
    """An ownership file with one group, as ownership.yaml declares `catalog`: the monolith
    side's table `monolith`, the catalog's `service`; the stream `name` carries the monolith's
    writes (owner monolith) or, `reverse`, the catalog's (owner catalog); the monolith keeps
    `keeps` whoever owns. Code before issue 11 ignores the file (`--before`)."""
    other = f"{name}_other"
    mono, svc = (other, name) if reverse else (name, other)
    group: dict[str, Any] = {"owner": "catalog" if reverse else "monolith",
                             "sides": {"monolith": {"stream": mono, "tables": [monolith]},
                                       "catalog": {"stream": svc, "tables": [service]}}}
    if keeps:
        group["keeps"] = {"monolith": {monolith: list(keeps)}}
    path = Path(_OWN_DIR) / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "groups": {"bench": group}}))
    return str(path)


def stream_doc(src: str, tgt: str, name: str, tables: Any, ownership: str, **extra: Any) -> dict[str, Any]:
    """A streams document with one stream (never the repository's ownership.yaml)."""
    spec = {"source": {"url": src}, "target": {"url": tgt}, "batch_size": 5000,
            "snapshot_chunk": 20000, "tables": tables, **extra}
    return {"streams": {name: spec}, "ownership": ownership}


# -- ours, in a process of its own ----------------------------------------------------------
def stream_worker(doc: str) -> None:
    """The child: run the one stream of `doc` until SIGTERM, on TREE's code. Prints a JSON
    line when streaming (its RSS then) and one when stopped (events, peak RSS)."""
    data = json.loads(doc)
    (name,) = data["streams"]
    tune = getattr(pipeline_mod, "tune_gc_for_streaming", None)  # as `strangler cdc run` does
    if tune is not None:  # (code before it did not)
        tune()
    pipe = Pipeline(parse(data).stream(name), on_tick=lambda m: None)
    signal.signal(signal.SIGTERM, lambda *_: pipe.stop())
    said: list[float] = []

    def until() -> bool:  # first called once the pipeline streams
        if not said:
            said.append(_cpu_s())
            print(json.dumps({"ready": True, "rss_mb": _proc_status_mb("VmRSS")}), flush=True)
        return False

    pipe.run(until=until)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(json.dumps({"events": pipe.metrics.events, "peak_rss_mb": round(peak, 1),
                      "hwm_mb": _proc_status_mb("VmHWM"),
                      "cpu_s": round(_cpu_s() - (said[0] if said else 0.0), 4)}), flush=True)


def _cpu_s() -> float:
    """CPU seconds (user + system, every thread) this process used so far."""
    use = resource.getrusage(resource.RUSAGE_SELF)
    return use.ru_utime + use.ru_stime


def _proc_status_mb(field: str) -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return round(int(line.split()[1]) / 1024, 1)
    return 0.0


@contextlib.contextmanager
def pipeline_process(doc: dict[str, Any], tree: str = HERE) -> Iterator[dict[str, float]]:
    """Our pipeline for `doc`'s stream in a fresh process on `tree`'s code, streaming from its
    slot when entered; stopped (SIGTERM) on exit, its figures then in the yielded dict."""
    (name,) = doc["streams"]
    src = doc["streams"][name]["source"]["url"]
    slot = f"strangler_{name}"
    env = {**os.environ, "STRANGLER_BENCH_TREE": tree}
    figures: dict[str, float] = {}
    with tempfile.TemporaryFile(mode="w+") as log:
        proc = subprocess.Popen([sys.executable, __file__, "--worker", "stream", "--spec", json.dumps(doc)],
                                env=env, cwd=tree, stdout=subprocess.PIPE, stderr=log, text=True)
        assert proc.stdout is not None

        def failed(what: str) -> RuntimeError:
            log.seek(0)
            return RuntimeError(f"our pipeline ({name}, {tree}) {what}:\n{log.read()[-3000:]}")

        try:
            ready, _, _ = select.select([proc.stdout], [], [], 120)
            line = proc.stdout.readline() if ready else ""
            if not line:
                raise failed("did not start streaming")
            figures["ready_rss_mb"] = float(json.loads(line).get("rss_mb", 0.0))
            wait_slot_active(src, slot)
            yield figures
        except BaseException as exc:
            died = proc.poll()
            proc.kill()
            proc.wait()
            if died is not None and not isinstance(exc, RuntimeError):  # why it failed
                raise failed(f"exited with {died}") from exc
            raise
        proc.send_signal(signal.SIGTERM)
        try:
            rest, _ = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise failed("did not stop within 120 s") from None
        lines = [ln for ln in rest.splitlines() if ln.startswith("{")]
        if proc.returncode != 0 or not lines:
            raise failed(f"exited with {proc.returncode}")
    last = json.loads(lines[-1])
    figures.update(peak_rss_mb=float(last["peak_rss_mb"]), events=float(last["events"]),
                   cpu_s=float(last.get("cpu_s", 0.0)))
    drop_slot(src, slot)


# -- streaming apply: the native subscriber and ours, one workload each --------------------
def measure_apply(pg: PostgresServer, peer: str, rows: int, tag: str, *, single: bool = False,
                  tree: str = HERE) -> tuple[float, dict[str, float]]:
    """Rows/s from the first commit until the last row is visible on the target, the `peer`
    (native, direct or reverse) streaming already: one transaction of `rows` inserts, or
    (`single`) `rows` one-row transactions. Also what the run measured besides (the
    producer's rate, our process's memory)."""
    src, tgt = pg.create_database(f"bsrc_{tag}"), pg.create_database(f"btgt_{tag}")
    running: contextlib.AbstractContextManager[dict[str, float]]
    if peer == "native":
        native_tables(src, tgt)
        running = native_subscriber(src, tgt, tag)
        table, row, target, cents = MONOLITH, MONOLITH_ROW, MONOLITH, False
    elif peer == "direct":
        sql(src, MONOLITH_DDL)
        sql(tgt, SERVICE_DDL)
        name = f"b_{tag}"
        running = pipeline_process(stream_doc(src, tgt, name, FORWARD, owned(name, reverse=False)), tree)
        table, row, target, cents = MONOLITH, MONOLITH_ROW, SERVICE, True
    elif peer == "reverse":
        sql(src, SERVICE_SLUG_DDL)
        sql(tgt, MONOLITH_DDL)
        name = f"b_{tag}"
        running = pipeline_process(stream_doc(src, tgt, name, REVERSE, owned(name, reverse=True)), tree)
        table, row, target, cents = SERVICE, SERVICE_SLUG_ROW, MONOLITH, False
    else:
        raise ValueError(f"unknown peer {peer!r}")
    info: dict[str, float] = {}
    with running as figures:
        if single:
            start, produced = produce_single_txns(src, table, row, rows)
            info["producer_rows_per_s"] = rows / (produced - start)
        else:
            start = produce_txn(src, table, row, rows)
        end = wait_visible(tgt, target, rows)
    info.update(figures)
    check(tgt, target, rows, cents=cents, what=f"{peer} ({tag})")
    return rows / (end - start), info


# -- the initial copy: COPY pass-through and ours ------------------------------------------
def measure_copy(pg: PostgresServer, src: str, rows: int, tag: str, *, binary: bool) -> float:
    tgt = pg.create_database(f"btgt_{tag}")
    sql(tgt, SERVICE_DDL)
    start = time.perf_counter()
    copy_pass_through(src, tgt, binary=binary)
    elapsed = time.perf_counter() - start
    check(tgt, SERVICE, rows, cents=True, what=f"COPY {'binary' if binary else 'text'} ({tag})")
    return rows / elapsed


def measure_snapshot(pg: PostgresServer, src: str, rows: int, tag: str) -> float:
    """Rows/s of a new stream's first run over the filled `src`, until it streams."""
    tgt = pg.create_database(f"btgt_{tag}")
    sql(tgt, SERVICE_DDL)
    name = f"b_{tag}"
    cfg = parse(stream_doc(src, tgt, name, FORWARD, owned(name, reverse=False))).stream(name)
    pipe = Pipeline(cfg, on_tick=lambda m: None)
    start = time.perf_counter()
    pipe.run(until=lambda: pipe.metrics.state == "streaming")
    elapsed = time.perf_counter() - start
    drop_slot(src, cfg.slot)
    sql(src, f'DROP PUBLICATION IF EXISTS "{cfg.publication}"')
    check(tgt, SERVICE, rows, cents=True, what=f"snapshot ({tag})")
    return rows / elapsed


# -- the Python-side ceiling ----------------------------------------------------------------
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


def measure_raw_read(pg: PostgresServer, rows: int, tag: str) -> float:
    """Rows/s reading one transaction of `rows` inserts from a pgoutput slot, streaming
    before it commits, from its commit until its last row is read (the peers' clock)."""
    src = pg.create_database(f"bsrc_{tag}")
    sql(src, MONOLITH_DDL, f"CREATE PUBLICATION p_raw FOR TABLE {MONOLITH}")
    conn = psycopg2.connect(src, connection_factory=psycopg2.extras.LogicalReplicationConnection)
    cur = conn.cursor()
    cur.create_replication_slot("s_raw", output_plugin="pgoutput")
    cur.start_replication(slot_name="s_raw", decode=False,
                          options={"proto_version": "1", "publication_names": "p_raw"})
    wait_slot_active(src, "s_raw")
    start = produce_txn(src, MONOLITH, MONOLITH_ROW, rows)
    seen = 0
    while True:
        msg = cur.read_message()
        if msg is None:
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
    assert seen == rows, f"raw read saw {seen} inserts, want {rows}"
    drop_slot(src, "s_raw")
    return rows / elapsed


# -- lag, memory, verify --------------------------------------------------------------------
def measure_lag(pg: PostgresServer, seconds: float, rate: int, *, reverse: bool = False,
                tree: str = HERE) -> tuple[float, float]:
    """Commit-to-applied lag (ms) while a producer commits `rate` rows/s in 10-row
    transactions; ours in its own process. "Applied" is the target row's insert time
    (a column default), a moment before the sink commits it. `reverse`: the catalog ->
    monolith shape (cents -> decimal, a dropped column), owned by the catalog."""
    tag = "lag_rev" if reverse else "lag"
    src, tgt = pg.create_database(f"bsrc_{tag}"), pg.create_database(f"btgt_{tag}")
    extra = ", price_cents bigint DEFAULT 1999, slug text DEFAULT 'tick'" if reverse else ""
    sql(src, f"CREATE TABLE ticks (id bigint PRIMARY KEY, sent_ms double precision{extra})")
    sql(tgt, f"CREATE TABLE ticks (id bigint PRIMARY KEY, sent_ms double precision, "
             f"{'price numeric(10,2), ' if reverse else ''}"
             "applied_ms double precision DEFAULT extract(epoch FROM clock_timestamp()) * 1000)")
    tables: dict[str, Any] = {"ticks": {"columns": {
        "id": "id", "sent_ms": "sent_ms", "price_cents": {"to": "price", "convert": "cents_to_decimal"}},
        "drop": ["slug"]}} if reverse else {"ticks": "ticks"}
    name = f"b_{tag}"
    doc = {"streams": {name: {"source": {"url": src}, "target": {"url": tgt}, "tables": tables}},
           "ownership": owned(name, reverse=reverse, monolith="ticks", service="ticks", keeps=())}
    per_tx = 10
    n = 0
    with pipeline_process(doc, tree):
        conn = psycopg2.connect(src)
        cur = conn.cursor()
        cur.execute("SET synchronous_commit = on")  # as in production (see cdc_workload)
        conn.commit()
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            cur.execute("INSERT INTO ticks (id, sent_ms) SELECT g, extract(epoch FROM clock_timestamp()) "
                        "* 1000 FROM generate_series(%s, %s) g", (n + 1, n + per_tx))
            conn.commit()
            n += per_tx
            time.sleep(max(0.0, start + n / rate - time.perf_counter()))
        produced = n / (time.perf_counter() - start)
        conn.close()
        wait_visible(tgt, "ticks", n, timeout=60)
    lags = sorted(r[0] for r in sql(tgt, "SELECT applied_ms - sent_ms FROM ticks"))
    assert len(lags) == n, f"lag: {len(lags)} of {n} rows applied"
    if produced < 0.9 * rate:
        note(f"  (the producer reached only {produced:.0f} of {rate} rows/s)")
    return statistics.median(lags), lags[min(len(lags) - 1, int(len(lags) * 0.99))]


def measure_verify(pg: PostgresServer, rows: int) -> float:
    """Rows/s of `verify` over the forward stream's tables, equal on both sides."""
    src, tgt = pg.create_database("bsrc_verify"), pg.create_database("btgt_verify")
    sql(src, MONOLITH_DDL)
    sql(tgt, SERVICE_DDL)
    fill(src, MONOLITH, MONOLITH_ROW, 1, rows)
    fill(tgt, SERVICE, SERVICE_ROW, 1, rows)
    sql(src, f"ANALYZE {MONOLITH}")
    sql(tgt, f"ANALYZE {SERVICE}")
    cfg = parse(stream_doc(src, tgt, "b_verify", FORWARD, owned("b_verify", reverse=False))).stream("b_verify")
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


# -- before/after ---------------------------------------------------------------------------
def compare_before(before: str, rows: int, rounds: int) -> dict[str, Any]:
    """Direct and reverse rows/s (one `rows`-row transaction) on the `before` tree's code and
    this one's, alternating, each pipeline in a fresh process; best of the rounds."""
    best: dict[str, float] = {}
    with PostgresServer() as pg:
        for i in range(rounds):
            for kind in ("direct", "reverse"):
                for label, tree in (("before", before), ("after", HERE)):
                    note(f"round {i + 1}: {kind} on {label} ({tree})")
                    value, _ = measure_apply(pg, kind, rows, f"{label}_{kind}{i}", tree=tree)
                    key = f"{label}_{kind}_rows_per_s"
                    best[key] = max(best.get(key, 0.0), value)
    out: dict[str, Any] = {"rows": rows, "rounds": rounds, "before": before}
    for kind in ("direct", "reverse"):
        b, a = best[f"before_{kind}_rows_per_s"], best[f"after_{kind}_rows_per_s"]
        out.update({f"before_{kind}_rows_per_s": round(b), f"after_{kind}_rows_per_s": round(a),
                    f"ratio_{kind}": round(a / b, 3)})
    return out


# -- the whole run --------------------------------------------------------------------------
def run(args: argparse.Namespace) -> dict[str, Any]:
    rounds = args.rounds
    full = args.only is None  # --only kafka: the direct path, Kafka and Debezium's part alone
    best: dict[str, float] = {}
    least: dict[str, float] = {}  # CPU per row and start-up times: the least of the rounds
    producer: list[float] = []
    cpu: list[float] = []  # our process's CPU µs per row, one 100k-row transaction

    def keep(key: str, value: float) -> None:
        best[key] = max(best.get(key, 0.0), value)

    def keep_least(key: str, value: float) -> None:
        least[key] = min(least.get(key, value), value)

    with PostgresServer() as pg, (KafkaServer() if args.kafka else contextlib.nullcontext()) as broker:
        if full:
            note(f"filling the copy source ({args.snapshot_rows} rows)")
            copy_src = pg.create_database("bsrc_copy")
            sql(copy_src, MONOLITH_DDL)
            fill(copy_src, MONOLITH, MONOLITH_ROW, 1, args.snapshot_rows)
            sql(copy_src, f"VACUUM ANALYZE {MONOLITH}")
        capture_lag: dict[str, tuple[float, float]] = {}  # ours, Debezium: p50, p99 ms
        if args.debezium:
            note(f"filling the capture snapshots' source ({args.capture_snapshot_rows} rows)")
            dbz_src = cdc_debezium.filled_source(pg, args.capture_snapshot_rows)
        for i in range(rounds):  # alternate, so machine noise hits every peer alike
            r = f"round {i + 1}:"
            if full:
                note(f"{r} COPY binary, COPY text, our initial copy ({args.snapshot_rows} rows)")
                keep("copy_binary", measure_copy(pg, copy_src, args.snapshot_rows, f"copyb{i}", binary=True))
                keep("copy_text", measure_copy(pg, copy_src, args.snapshot_rows, f"copyt{i}", binary=False))
                keep("snapshot", measure_snapshot(pg, copy_src, args.snapshot_rows, f"snap{i}"))
                note(f"{r} one {args.rows}-row transaction: raw read, native, direct, reverse")
                keep("raw_read", measure_raw_read(pg, args.rows, f"raw{i}"))
                keep("native", measure_apply(pg, "native", args.rows, f"native{i}")[0])
            else:
                note(f"{r} one {args.rows}-row transaction: direct")
            rate, info = measure_apply(pg, "direct", args.rows, f"direct{i}")
            keep("direct", rate)
            cpu.append(info["cpu_s"] / args.rows * 1e6)
            if full:
                keep("reverse", measure_apply(pg, "reverse", args.rows, f"reverse{i}")[0])
                note(f"{r} {args.single_txns} one-row transactions: native, direct")
                for peer in ("native", "direct"):
                    value, info = measure_apply(pg, peer, args.single_txns, f"{peer}_single{i}", single=True)
                    keep(f"{peer}_single_txn", value)
                    producer.append(info["producer_rows_per_s"])
            if broker is not None:
                note(f"{r} Kafka pipeline")
                keep("kafka", measure_kafka(pg, broker, args.rows, f"kafka{i}", tables=FORWARD,
                                            ownership=owned(f"b_kafka{i}", reverse=False)))
            if broker is not None and args.debezium:
                peers = ("ours", "debezium") if i % 2 == 0 else ("debezium", "ours")
                note(f"{r} capture into Kafka, {' then '.join(peers)}: {args.rows}-row transactions"
                     f"{', lag' if i == rounds - 1 else ''}, then a {args.capture_snapshot_rows}-row snapshot")
                last = i == rounds - 1  # lag too, then, in the same warm process
                for peer in peers:
                    got = cdc_debezium.measure_capture(pg, broker, peer, args.rows, f"cap_{peer}{i}",
                                                       lag_seconds=args.lag_seconds if last else 0.0)
                    keep(f"capture_{peer}", got.rows_per_s)
                    keep_least(f"capture_cpu_{peer}", got.cpu_us_per_row)
                    if last:
                        capture_lag[peer] = (got.lag_p50_ms, got.lag_p99_ms)
                for peer in peers:
                    snap = cdc_debezium.measure_snapshot(pg, broker, peer, dbz_src, args.capture_snapshot_rows,
                                                         f"csnap_{peer}{i}")
                    keep(f"capture_snapshot_{peer}", snap.rows_per_s)
                    keep_least(f"capture_snapshot_start_{peer}", snap.start_s)
                    keep_least(f"capture_snapshot_cpu_{peer}", snap.cpu_us_per_row)
        if full:
            note(f"lag at {args.lag_rate} rows/s")
            p50, p99 = measure_lag(pg, args.lag_seconds, args.lag_rate)
            note("reverse lag at 1,000 rows/s")
            rp50, rp99 = measure_lag(pg, args.lag_seconds, 1000, reverse=True)
        mem: dict[str, float] = {}
        if full and args.mem_rows:
            note(f"memory: one {args.mem_rows}-row transaction through a fresh pipeline process")
            per_s, mem = measure_apply(pg, "direct", args.mem_rows, "mem")
            mem["rows_per_s"] = per_s
        if full:
            note(f"verify ({args.verify_rows} rows)")
            ver = measure_verify(pg, args.verify_rows)
        if broker is not None:
            note("Kafka lag at 1,000 rows/s")
            kp50, kp99 = measure_kafka_lag(pg, broker, args.lag_seconds)

    def ratio(a: str, b: str) -> float:
        return round(best[a] / best[b], 3)

    out: dict[str, Any] = {"rows": args.rows, "rounds": rounds}
    if full:
        if best["native_single_txn"] > 0.9 * min(producer):
            note(f"the native subscriber kept up with the producer ({min(producer):.0f} commits/s): "
                 "its one-row-transaction figure is a lower bound")
        out.update({
            "single_txns": args.single_txns, "snapshot_rows": args.snapshot_rows,
            "copy_binary_rows_per_s": round(best["copy_binary"]),
            "copy_text_rows_per_s": round(best["copy_text"]),
            "snapshot_rows_per_s": round(best["snapshot"]),
            "ratio_snapshot_vs_copy": ratio("snapshot", "copy_binary"),
            "native_rows_per_s": round(best["native"]),
        })
    out.update({"direct_rows_per_s": round(best["direct"])})
    if full:
        out.update({
            "ratio_direct_vs_native": ratio("direct", "native"),
            "direct_cpu_us_per_row": round(min(cpu), 2),
            "native_single_txn_rows_per_s": round(best["native_single_txn"]),
            "direct_single_txn_rows_per_s": round(best["direct_single_txn"]),
            "ratio_direct_vs_native_single_txn": ratio("direct_single_txn", "native_single_txn"),
            "single_txn_producer_rows_per_s": round(min(producer)),
            "raw_read_rows_per_s": round(best["raw_read"]),
            "ratio_direct_vs_raw": ratio("direct", "raw_read"),
            "reverse_rows_per_s": round(best["reverse"]),
            "ratio_reverse_vs_direct": ratio("reverse", "direct"),
            "lag_rate": args.lag_rate,
            "lag_p50_ms": round(p50, 1),
            "lag_p99_ms": round(p99, 1),
            "reverse_lag_p50_ms": round(rp50, 1),
            "reverse_lag_p99_ms": round(rp99, 1),
            "verify_rows_per_s": round(ver),
        })
    else:
        out["direct_cpu_us_per_row"] = round(min(cpu), 2)
    if mem:
        out.update({"mem_rows": args.mem_rows, "mem_peak_rss_mb": mem["peak_rss_mb"],
                    "mem_ready_rss_mb": mem["ready_rss_mb"], "mem_rows_per_s": round(mem["rows_per_s"])})
    if args.kafka:
        out.update({"kafka_rows_per_s": round(best["kafka"]), "ratio_kafka_vs_direct": ratio("kafka", "direct"),
                    "kafka_lag_p50_ms": round(kp50, 1), "kafka_lag_p99_ms": round(kp99, 1)})
    if args.debezium:
        out.update({
            "capture_snapshot_rows": args.capture_snapshot_rows,
            "capture_rows_per_s": round(best["capture_ours"]),
            "debezium_capture_rows_per_s": round(best["capture_debezium"]),
            "ratio_capture_vs_debezium": ratio("capture_ours", "capture_debezium"),
            "capture_cpu_us_per_row": round(least["capture_cpu_ours"], 1),
            "debezium_cpu_us_per_row": round(least["capture_cpu_debezium"], 1),
            "capture_snapshot_rows_per_s": round(best["capture_snapshot_ours"]),
            "debezium_snapshot_rows_per_s": round(best["capture_snapshot_debezium"]),
            "ratio_snapshot_capture_vs_debezium": ratio("capture_snapshot_ours", "capture_snapshot_debezium"),
            "capture_snapshot_start_s": round(least["capture_snapshot_start_ours"], 2),
            "debezium_snapshot_start_s": round(least["capture_snapshot_start_debezium"], 2),
            "capture_snapshot_cpu_us_per_row": round(least["capture_snapshot_cpu_ours"], 1),
            "debezium_snapshot_cpu_us_per_row": round(least["capture_snapshot_cpu_debezium"], 1),
            "capture_lag_rate": cdc_debezium.LAG_RATE,
            "capture_lag_p50_ms": round(capture_lag["ours"][0], 1),
            "capture_lag_p99_ms": round(capture_lag["ours"][1], 1),
            "debezium_lag_p50_ms": round(capture_lag["debezium"][0], 1),
            "debezium_lag_p99_ms": round(capture_lag["debezium"][1], 1),
        })
    goals: dict[str, bool] = {}
    if full:
        goals.update({
            "snapshot_vs_copy": out["ratio_snapshot_vs_copy"] >= 0.5,
            "direct_vs_native": out["ratio_direct_vs_native"] >= 1.0,
            "direct_vs_native_single_txn": out["ratio_direct_vs_native_single_txn"] >= 1.0,
            "lag_p99": args.lag_rate >= 5000 and out["lag_p99_ms"] < 50,
        })
    if args.kafka:
        goals["kafka_vs_direct"] = out["ratio_kafka_vs_direct"] >= 0.5
    if args.debezium:
        goals["capture_vs_debezium"] = out["ratio_capture_vs_debezium"] >= 1.5
    out["goals_met"] = goals
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, one round, no Kafka, no memory run")
    ap.add_argument("--rows", type=int, help="rows of the one-transaction workload (100000)")
    ap.add_argument("--single-txns", type=int, help="one-row transactions of the second workload (20000)")
    ap.add_argument("--snapshot-rows", type=int, help="rows of the initial-copy table (500000)")
    ap.add_argument("--verify-rows", type=int, help="rows per side for verify (1000000)")
    ap.add_argument("--lag-rate", type=int, default=5000, help="rows/s while lag is measured (5000)")
    ap.add_argument("--lag-seconds", type=float, help="how long lag is measured (10)")
    ap.add_argument("--mem-rows", type=int, help="rows of the memory run's transaction; 0 skips it (1000000)")
    ap.add_argument("--rounds", type=int, help="rounds of the peers, alternating (2)")
    ap.add_argument("--kafka", action=argparse.BooleanOptionalAction, help="the Kafka path too (default: yes)")
    ap.add_argument("--debezium", action=argparse.BooleanOptionalAction,
                    help="our capture beside Debezium's connector into Kafka (default: yes; needs --kafka)")
    ap.add_argument("--capture-snapshot-rows", type=int,
                    help="rows of the table ours and Debezium snapshot into Kafka (200000)")
    ap.add_argument("--only", choices=("kafka",),
                    help="kafka: only the direct path, the Kafka path and Debezium's part (and their lags)")
    ap.add_argument("--before", metavar="TREE",
                    help="compare direct and reverse rows/s with the code of another checkout")
    ap.add_argument("--worker", choices=("stream",), help=argparse.SUPPRESS)
    ap.add_argument("--spec", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return stream_worker(args.spec)
    told_debezium = args.debezium is not None
    if args.only:  # what it is for, also with --quick's sizes
        if args.kafka is False:
            ap.error("--only kafka measures the Kafka path: drop --no-kafka")
        args.kafka = True
        args.debezium = True if args.debezium is None else args.debezium
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.debezium and not args.kafka:
        if told_debezium:
            ap.error("--debezium needs the broker: drop --no-kafka, or add --no-debezium")
        args.debezium = False
    if args.before:
        print(json.dumps(compare_before(str(Path(args.before).resolve()), args.rows, args.rounds)))
        return
    print(json.dumps(run(args)))


if __name__ == "__main__":
    main()
