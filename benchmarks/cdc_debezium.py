"""Our capture half beside Debezium's own PostgreSQL connector, both into Kafka (issue 13).

`benchmarks/cdc.py` calls these in each round, ours and Debezium's in turn (the order
alternating by round), each alone on the same PostgreSQL server and broker (the other is
not running), on issue 14's 9-column table (cdc_workload); each time a new source database,
slot, publication and topic:

  ours       `strangler cdc run NAME --part capture` as a process (cdc_kafka.halves without
             the apply half), the default transport (linger_ms 5, lz4): events in the
             Debezium envelope with a transaction block, BEGIN/END records on
             `<prefix>.transaction`, an idempotent acks=all producer
  debezium   devstack.DebeziumConnector: Debezium 3.6.1's connector in its embedded engine,
             each batch sent by an idempotent acks=all producer and flushed before the next
             (DEBEZIUM_OPTIONS and DEBEZIUM_JVM below; no transaction metadata: less work)

  measure_capture   the peer streaming, warmed up by WARM_ROWS rows (Debezium's JIT is
                    still compiling through the first 100k), then TIMED transactions of
                    --rows inserts, one after the other: rows/s from just before a commit
                    until the table topic's high watermark counts every one of its messages
                    (best of them), and the process's CPU per row meanwhile. With
                    `lag_seconds`, then `steady_lag` in the same warm process
  steady_lag        1,000 rows/s in 10-row transactions: per row, the broker's append time
                    of its message (message.timestamp.type=LogAppendTime) minus the wall clock
                    just before its transaction's commit; p50 and p99
  measure_snapshot  a new stream / connector over a filled table: messages/s from the first
                    message acknowledged to the last (so neither the JVM's nor Python's
                    start-up is in it, but a cold JIT is), the seconds from the launch to that
                    first message, and the process's CPU per row from its launch

"Acknowledged" is the same for both: a message counted in the table topic's high watermark
(one partition, one replica: acks=all, idempotent producers; what the high watermark counts
the producer is told is written, and never twice), polled every 5 ms. Every topic is made
here first with the same settings for both peers (TOPIC_CONFIG); ours checks and keeps it.
Each measurement checks the messages: exactly one per row for a transaction (none twice),
every row once in a snapshot (read back by key).

    python benchmarks/cdc_debezium.py [ROWS [SNAPSHOT_ROWS]]   # one turn each, alone
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psycopg2
from cdc_kafka import halves
from cdc_workload import MONOLITH, MONOLITH_DDL, MONOLITH_ROW, fill, sql

from devstack import KafkaServer, PostgresServer

if TYPE_CHECKING:  # imported when first run: older trees (cdc.py --before) have none
    from devstack import DebeziumConnector

# the same for both peers' table topics: one partition, one copy (one broker), our codec;
# the broker stamps each message with its append time (the lag's "acknowledged" clock)
TOPIC_CONFIG = {"message.timestamp.type": "LogAppendTime", "compression.type": "lz4"}
# for the topics ours makes itself (transaction, dead letters): it sets the codec
OUR_TOPIC_CONFIG = {"message.timestamp.type": "LogAppendTime"}

# Debezium as a competent operator would run it here (README: why each):
DEBEZIUM_OPTIONS = {
    "decimal.handling.mode": "string",  # numeric as text, as ours sends it (default: bytes)
    "max.batch.size": "8192",  # default 2048: the runner flushes the producer per batch
    "max.queue.size": "32768",  # default 8192; must exceed max.batch.size
    "poll.interval.ms": "10",  # default 500: a batch not full waits that long to be handed over
    "strangler.producer.linger.ms": "5",  # ours: linger_ms 5
    "strangler.producer.batch.size": "1048576",  # librdkafka's default, which ours uses; Java's: 16 KB
    "strangler.producer.compression.type": "lz4",  # ours: lz4
}
DEBEZIUM_HEAP = "1g"  # devstack's default is 384m; Kafka Connect's scripts give 2g
# devstack starts it with -Xms64m -XX:+UseSerialGC: a young generation that small collects
# ~2x as often (GC 15-19 µs/row instead of 6-8 here); a JVM flag devstack does not set
DEBEZIUM_JVM = "-Xmn512m"
LAG_RATE = 1000
LAG_PER_TX = 10
WARM_ROWS = 100_000  # before the timed transactions: JIT-compiled Debezium, a warm interpreter
TIMED = 2  # timed transactions per process (the best counts): the second is warmer still


# -- "acknowledged in Kafka": the table topic's high watermark ---------------------------------
def make_topic(bootstrap: str, topic: str) -> None:
    """`topic` with TOPIC_CONFIG, before either peer could make it its own way."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    fut = admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1,
                                        config=TOPIC_CONFIG)])[topic]
    fut.result(timeout=30)
    deadline = time.monotonic() + 30
    while not admin.list_topics(topic, timeout=10).topics[topic].partitions:  # known to the broker
        if time.monotonic() > deadline:
            raise TimeoutError(f"topic {topic} has no partition 30 s after it was created")
        time.sleep(0.05)


class Watermark:
    """`topic`'s high watermark, polled every `every` s by a thread while entered; each new
    value is kept with the clock (perf_counter) it was first seen at."""

    def __init__(self, bootstrap: str, topic: str, every: float = 0.005) -> None:
        from confluent_kafka import Consumer, TopicPartition

        self._consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"hw-{uuid.uuid4().hex}",
                                   "enable.auto.commit": False})
        self._part = TopicPartition(topic, 0)
        self.topic, self.every = topic, every
        self.seen: list[tuple[float, int]] = []  # (clock, count), the counts increasing
        self._entered = 0.0
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._watch, name=f"hw-{topic}", daemon=True)

    @property
    def count(self) -> int:
        return self.seen[-1][1] if self.seen else 0

    def _watch(self) -> None:
        try:
            while not self._stop.is_set():
                count = int(self._consumer.get_watermark_offsets(self._part, timeout=10, cached=False)[1])
                if count > self.count:
                    self.seen.append((time.perf_counter(), count))
                time.sleep(self.every)
        except BaseException as exc:  # reported by the waiting caller
            self._error = exc

    def at(self, count: int) -> float | None:
        """When the topic was first seen holding `count` messages (None: not yet)."""
        return next((t for t, c in self.seen if c >= count), None)

    def wait(self, count: int, *, timeout: float = 300.0, alive: Callable[[], bool] | None = None) -> float:
        """The clock when the topic held `count` messages; `alive()` False gives up at once."""
        deadline = time.monotonic() + timeout
        while (at := self.at(count)) is None:
            self._check(f"{count}", deadline, alive)
            time.sleep(0.02)
        return at

    def settle(self, at_least: int, *, quiet: float = 0.5, timeout: float = 120.0, alive: Callable[[], bool] | None = None) -> int:
        """The count once it is `at_least` and has not moved for `quiet` seconds."""
        deadline = time.monotonic() + timeout
        since = self.seen[-1][0] if self.seen else self._entered
        while self.count < at_least or time.perf_counter() - since < quiet:
            self._check(f"at least {at_least}", deadline, alive)
            time.sleep(0.05)
            since = self.seen[-1][0] if self.seen else self._entered
        return self.count

    def _check(self, want: str, deadline: float, alive: Callable[[], bool] | None) -> None:
        if self._error is not None:
            raise self._error
        if alive is not None and not alive():
            raise RuntimeError(f"{self.topic}: the peer stopped at {self.count} messages of {want}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{self.topic} holds {self.count} messages, not {want}, in time")

    def __enter__(self) -> Watermark:
        self._entered = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(15)
        self._consumer.close()


def read_rows(bootstrap: str, topic: str, start: int, end: int) -> list[tuple[bytes, int]]:
    """(key, broker append time in ms) of each row's message at offsets start..end-1; ours'
    row-less snapshot markers (key ``{}``) left out."""
    from confluent_kafka import TIMESTAMP_LOG_APPEND_TIME, Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"read-{uuid.uuid4().hex}",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, start)])  # one partition, no group to join
    out: list[tuple[bytes, int]] = []
    offset = start
    deadline = time.monotonic() + 120
    try:
        while offset < end:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic}: read up to offset {offset} of {end}")
            for msg in consumer.consume(10_000, 1.0):
                if msg.error() is not None:
                    continue
                offset = int(msg.offset() or 0) + 1
                if offset > end:
                    break
                kind, ms = msg.timestamp()
                assert kind == TIMESTAMP_LOG_APPEND_TIME, f"{topic}: message timestamp type {kind}"
                key = msg.key()
                if key and key != b"{}":
                    out.append((key, ms))
    finally:
        consumer.close()
    return out


def _key(raw: bytes) -> int:
    return int(json.loads(raw)["id"])


# -- the two peers --------------------------------------------------------------------------
def _prefix(tag: str) -> str:
    return f"{tag}_{uuid.uuid4().hex[:6]}"


@dataclass
class Capture:
    """Our running capture half."""

    procs: list[subprocess.Popen[bytes]]

    def alive(self) -> bool:
        return all(p.poll() is None for p in self.procs)


@contextlib.contextmanager
def ours(pg: PostgresServer, src: str, kafka: KafkaServer, tag: str, prefix: str) -> Iterator[Capture]:
    """Our capture half for a new stream of `src`'s table (streaming, or copied, when entered);
    stopped, its slot and publication dropped, on exit."""
    tgt = pg.create_database(f"btgt_{tag}")
    sql(tgt, MONOLITH_DDL)  # only for the mapping check at start: nothing is applied
    name = f"b_{tag}"
    with halves(src, tgt, kafka, {MONOLITH: MONOLITH}, name, parts=("capture",),
                transport={"topic_prefix": prefix, "topic_config": OUR_TOPIC_CONFIG}) as procs:
        yield Capture(procs)
    sql(src, f'DROP PUBLICATION IF EXISTS "strangler_{name}"')


@contextlib.contextmanager
def _jvm_options(options: str) -> Iterator[None]:
    """JAVA_TOOL_OPTIONS for the JVMs started meanwhile (devstack takes no JVM flags)."""
    before = os.environ.get("JAVA_TOOL_OPTIONS")
    os.environ["JAVA_TOOL_OPTIONS"] = f"{before} {options}" if before else options
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("JAVA_TOOL_OPTIONS", None)
        else:
            os.environ["JAVA_TOOL_OPTIONS"] = before


@contextlib.contextmanager
def debezium(src: str, kafka: KafkaServer, prefix: str, *, snapshot_mode: str,
             options: dict[str, str] | None = None, heap: str = DEBEZIUM_HEAP) -> Iterator[DebeziumConnector]:
    """Debezium's connector on `src`'s table, started (streaming) when entered; stopped, its
    slot and publication dropped, on exit."""
    from devstack import DebeziumConnector

    dbz = DebeziumConnector(dsn=src, bootstrap=kafka.bootstrap, topic_prefix=prefix,
                            tables=[f"public.{MONOLITH}"], snapshot_mode=snapshot_mode,
                            options={**DEBEZIUM_OPTIONS, **(options or {})}, heap=heap)
    try:
        with _jvm_options(DEBEZIUM_JVM):
            dbz.start()
        yield dbz
    finally:
        dbz.stop()
        with contextlib.suppress(psycopg2.Error):
            dbz.drop_slot()
        sql(src, f'DROP PUBLICATION IF EXISTS "{dbz.publication}"')


# -- the measurements -----------------------------------------------------------------------
def _running(pg: PostgresServer, kafka: KafkaServer, peer: str, src: str, tag: str, prefix: str,
             snapshot_mode: str, options: dict[str, str] | None = None
             ) -> contextlib.AbstractContextManager[Any]:
    if peer == "ours":
        return ours(pg, src, kafka, tag, prefix)
    if peer == "debezium":
        heap = (options or {}).get("heap", DEBEZIUM_HEAP)
        opts = {k: v for k, v in (options or {}).items() if k != "heap"}
        return debezium(src, kafka, prefix, snapshot_mode=snapshot_mode, options=opts, heap=heap)
    raise ValueError(f"unknown peer {peer!r}")


def _alive(peer: str, handle: Any) -> Callable[[], bool]:
    return handle.alive if peer == "ours" else (lambda: handle.running)


def _pid(peer: str, handle: Any) -> int:
    """The peer's process: ours' capture half, or Debezium's JVM (found by its run folder)."""
    if peer == "ours":
        return int(handle.procs[0].pid)
    folder = os.path.dirname(handle.log_path)
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError), open(f"/proc/{entry}/cmdline", "rb") as fh:
                if folder.encode() in fh.read():
                    return int(entry)
    raise RuntimeError(f"no process of Debezium's run in {folder}")


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of process `pid` (all its threads) so far."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _insert(dsn: str, lo: int, hi: int) -> float:
    """Rows lo..hi in ONE transaction (synchronous_commit on); the clock just before its commit."""
    conn = psycopg2.connect(dsn)
    try:
        cur = conn.cursor()
        cur.execute("SET synchronous_commit = on")  # as in production (see cdc_workload)
        cur.execute(f"INSERT INTO {MONOLITH} SELECT {MONOLITH_ROW} FROM generate_series({int(lo)}, {int(hi)}) g")
        start = time.perf_counter()
        conn.commit()
    finally:
        conn.close()
    return start


@dataclass
class Captured:
    """What one peer's capture process measured (`measure_capture`)."""

    rows_per_s: float
    cpu_us_per_row: float
    lag_p50_ms: float = 0.0
    lag_p99_ms: float = 0.0


def measure_capture(pg: PostgresServer, kafka: KafkaServer, peer: str, rows: int, tag: str, *,
                    warm: int = WARM_ROWS, times: int = TIMED, lag_seconds: float = 0.0,
                    options: dict[str, str] | None = None) -> Captured:
    """`peer` (ours | debezium) streaming from a new source, warmed up by `warm` rows first:
    rows/s from the commit of a `rows`-row transaction until all its messages are
    acknowledged in the table topic, the best of `times` such transactions in turn, and the
    peer's CPU µs per row in that one (its process, every thread: Debezium's JIT compiler
    and GC too). Then, if `lag_seconds`, its lag (`steady_lag`) in the same warm process.
    `options`: Debezium's, over DEBEZIUM_OPTIONS."""
    src = pg.create_database(f"bsrc_{tag}")
    sql(src, MONOLITH_DDL)
    prefix = _prefix(tag)
    topic = f"{prefix}.public.{MONOLITH}"
    make_topic(kafka.bootstrap, topic)
    best = (0.0, 0.0)
    with _running(pg, kafka, peer, src, tag, prefix, "no_data", options) as handle, \
            Watermark(kafka.bootstrap, topic) as hw:
        alive, pid = _alive(peer, handle), _pid(peer, handle)
        if warm:  # keys after the timed ones
            fill(src, MONOLITH, MONOLITH_ROW, times * rows + 1, times * rows + warm)
        base = hw.settle(warm, alive=alive)  # ours' empty initial copy left 2 markers before
        for i in range(times):
            cpu = _cpu_s(pid)
            start = _insert(src, i * rows + 1, (i + 1) * rows)
            end = hw.wait(base + rows, alive=alive)
            cpu = _cpu_s(pid) - cpu
            final = hw.settle(base + rows, alive=alive)
            if final != base + rows:
                raise AssertionError(f"{peer} capture: {final - base} messages for {rows} rows")
            base = final
            best = max(best, (rows / (end - start), cpu / rows * 1e6))
        figures = Captured(*best)
        if lag_seconds:
            figures.lag_p50_ms, figures.lag_p99_ms = steady_lag(
                src, kafka, hw, peer, lag_seconds, key0=times * rows + warm + 1, alive=alive)
    return figures


@dataclass
class Snapshotted:
    """What one peer's initial snapshot measured (`measure_snapshot`)."""

    rows_per_s: float  # messages/s from the first acknowledged to the last
    start_s: float  # from the launch to the first acknowledged
    cpu_us_per_row: float  # the process's CPU from its launch until all were acknowledged


def measure_snapshot(pg: PostgresServer, kafka: KafkaServer, peer: str, src: str, rows: int,
                     tag: str) -> Snapshotted:
    """A new stream (ours) or connector (Debezium, snapshot_mode initial) over `src`'s
    `rows`-row table: messages/s from the first message acknowledged until the last is, the
    seconds from its launch to that first message, its CPU per row (start-up included). Ours
    sends a row-less marker per 20k-row chunk besides the rows (12 for 200k), Debezium none."""
    prefix = _prefix(tag)
    topic = f"{prefix}.public.{MONOLITH}"
    make_topic(kafka.bootstrap, topic)
    with Watermark(kafka.bootstrap, topic) as hw:
        launched = time.perf_counter()
        # entered once the copy is read (Debezium) or in Kafka (ours) and streaming
        with _running(pg, kafka, peer, src, tag, prefix, "initial") as handle:
            total = hw.settle(rows, alive=_alive(peer, handle))
            cpu = _cpu_s(_pid(peer, handle))
        end = hw.wait(total)
    keys = {key for key, _ in read_rows(kafka.bootstrap, topic, 0, total)}
    if len(keys) != rows or total > rows + rows // 1000 + 2:
        raise AssertionError(f"{peer} snapshot: {total} messages, {len(keys)} rows, want {rows} rows")
    first_at, first = hw.seen[0]
    if end <= first_at:
        raise RuntimeError(f"{peer} snapshot: all {rows} rows appeared at once; use more rows")
    return Snapshotted((total - first) / (end - first_at), first_at - launched, cpu / rows * 1e6)


def steady_lag(src: str, kafka: KafkaServer, hw: Watermark, peer: str, seconds: float, *,
               key0: int, alive: Callable[[], bool], rate: int = LAG_RATE) -> tuple[float, float]:
    """Commit-to-acknowledged lag (ms), p50 and p99, of the peer streaming `src` into `hw`'s
    topic while `rate` rows/s (keys from `key0`) are committed in 10-row transactions: the
    broker's append time of each row's message minus the wall clock just before its
    transaction's commit."""
    base = hw.settle(0, alive=alive)
    committed: dict[int, float] = {}  # key -> epoch ms just before its transaction's commit
    conn = psycopg2.connect(src)
    try:
        cur = conn.cursor()
        cur.execute("SET synchronous_commit = on")  # as in production (see cdc_workload)
        conn.commit()
        n = 0
        began = time.perf_counter()
        while time.perf_counter() - began < seconds:
            lo = key0 + n
            cur.execute(f"INSERT INTO {MONOLITH} SELECT {MONOLITH_ROW} "
                        f"FROM generate_series({lo}, {lo + LAG_PER_TX - 1}) g")
            at = time.time() * 1000
            conn.commit()
            for key in range(lo, lo + LAG_PER_TX):
                committed[key] = at
            n += LAG_PER_TX
            time.sleep(max(0.0, began + n / rate - time.perf_counter()))
        produced = n / (time.perf_counter() - began)
    finally:
        conn.close()
    final = hw.settle(base + n, alive=alive)
    if produced < 0.9 * rate:
        print(f"  ({peer} lag: the producer reached only {produced:.0f} of {rate} rows/s)",
              file=sys.stderr, flush=True)
    got = read_rows(kafka.bootstrap, hw.topic, base, final)
    if len(got) != n or final != base + n:
        raise AssertionError(f"{peer} lag: {len(got)} row messages ({final - base} in all) for {n} rows")
    lags = sorted(ms - committed[_key(key)] for key, ms in got)
    return statistics.median(lags), lags[min(n - 1, int(n * 0.99))]


def filled_source(pg: PostgresServer, rows: int, tag: str = "dbz_snap") -> str:
    """A source database whose table holds rows 1..`rows` (the snapshots' source)."""
    src = pg.create_database(f"bsrc_{tag}")
    sql(src, MONOLITH_DDL)
    fill(src, MONOLITH, MONOLITH_ROW, 1, rows)
    sql(src, f"VACUUM ANALYZE {MONOLITH}")
    return src


if __name__ == "__main__":  # one round alone: python benchmarks/cdc_debezium.py [ROWS [SNAPSHOT_ROWS]]
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    m = int(sys.argv[2]) if len(sys.argv) > 2 else 200_000
    out: dict[str, Any] = {"rows": n, "snapshot_rows": m}
    began = time.perf_counter()
    with PostgresServer() as pg, KafkaServer() as broker:
        snap_src = filled_source(pg, m)
        for who in ("ours", "debezium"):
            got = measure_capture(pg, broker, who, n, f"cap_{who}", lag_seconds=10.0)
            out.update({f"{who}_capture_rows_per_s": round(got.rows_per_s),
                        f"{who}_cpu_us_per_row": round(got.cpu_us_per_row, 1),
                        f"{who}_lag_p50_ms": round(got.lag_p50_ms, 1), f"{who}_lag_p99_ms": round(got.lag_p99_ms, 1)})
            print(f"[{time.perf_counter() - began:.0f} s] {who}: capture", file=sys.stderr, flush=True)
            snap = measure_snapshot(pg, broker, who, snap_src, m, f"snap_{who}")
            out.update({f"{who}_snapshot_rows_per_s": round(snap.rows_per_s),
                        f"{who}_snapshot_start_s": round(snap.start_s, 2),
                        f"{who}_snapshot_cpu_us_per_row": round(snap.cpu_us_per_row, 1)})
            print(f"[{time.perf_counter() - began:.0f} s] {who}: snapshot", file=sys.stderr, flush=True)
    print(json.dumps(out))
