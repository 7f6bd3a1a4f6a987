"""Each CDC guarantee of the README, tested with the fault injected at the exact point it
protects (cdc/faults.py), so the test fails whenever that guarantee's code is removed.

Elsewhere: unchanged TOAST (test_stream_features.test_unchanged_toast_value_is_never_written),
no echo (test_stream_features.test_sink_writes_are_not_echoed_by_a_reverse_stream), DDL stop
(test_pipeline_postgres.test_schema_change_stops_clearly_and_restarts_after_fix).
"""

from __future__ import annotations

import signal
import subprocess
import threading
import uuid
from collections.abc import Sequence

import pytest

from cdc import faults
from cdc.events import ChangeEvent
from cdc.transport import Batch
from cdc.transport.direct import DirectTransport
from tests.cdc.conftest import Env, source_rows, sql, target_rows, wait_for
from tests.cdc.test_stream_features import config, running

pytestmark = pytest.mark.postgres

# Every row image the sink *proposes* to the target, identical or not (BEFORE INSERT fires even
# when ON CONFLICT then skips the row): a replayed change shows up here even where the upsert
# leaves the row alone, and coalescing within a batch cannot hide it.
PROPOSED_LOG = """
CREATE TABLE proposed_log (id int, version int);
CREATE FUNCTION log_proposed() RETURNS trigger AS $$
BEGIN INSERT INTO proposed_log VALUES (NEW.id, NEW.version); RETURN NEW; END $$ LANGUAGE plpgsql;
CREATE TRIGGER products_proposed BEFORE INSERT ON products FOR EACH ROW EXECUTE FUNCTION log_proposed();
"""


def seed(env: Env, products: int) -> None:
    sql(env.src, "INSERT INTO catalog_category (name) SELECT 'c' || g FROM generate_series(1, 5) g")
    sql(env.src, f"INSERT INTO catalog_product (category_id, name, price) "
                 f"SELECT 1 + g % 5, 'p' || g, g FROM generate_series(1, {products}) g")


def settle(env: Env) -> None:
    """Wait until a marker written to the source now is in the target: the stream has applied
    everything before it. Then compare (a lost change fails at once, not after a timeout)."""
    marker = f"marker {uuid.uuid4().hex}"
    sql(env.src, "INSERT INTO catalog_category (name) VALUES (%s)", (marker,))
    wait_for(lambda: sql(env.tgt, "SELECT 1 FROM categories WHERE name = %s", (marker,)) != [], 30,
             "the marker to reach the target")


def proposed_twice(env: Env) -> list[tuple[int, int, int]]:
    return sql(env.tgt, "SELECT id, version, count(*) FROM proposed_log GROUP BY 1, 2 HAVING count(*) > 1 ORDER BY 1, 2")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0


def first_run(env: Env) -> None:
    """Slot created, tables copied, stopped cleanly: the next run only streams."""
    proc = env.start()
    settle(env)
    stop(proc)


@pytest.mark.slow
def test_changes_made_while_the_slot_is_new_arrive_exactly_once(cdc_env: Env) -> None:
    """Gap-free start: the copy reads the slot's exported snapshot, the stream the rest."""
    env = cdc_env
    seed(env, 10)
    sql(env.tgt, PROPOSED_LOG)
    proc = env.start("source.after_slot_created=pause")
    faults.wait_hit(env.faults_dir, "source.after_slot_created")
    # after the slot's consistent point, before the copy has imported its snapshot
    sql(env.src, "UPDATE catalog_product SET version = 2, name = 'two' WHERE id IN (1, 2)")
    sql(env.src, "UPDATE catalog_product SET version = 3, name = 'three' WHERE id = 1")
    sql(env.src, "DELETE FROM catalog_product WHERE id = 3")
    sql(env.src, "INSERT INTO catalog_product (id, category_id, name, price) VALUES (100, 1, 'new', 1)")
    faults.release(env.faults_dir, "source.after_slot_created")
    settle(env)
    assert target_rows(env.tgt) == source_rows(env.src)
    assert proposed_twice(env) == []  # the copy had v1 of rows 1 and 2; the stream the rest
    assert sql(env.tgt, "SELECT DISTINCT version FROM proposed_log WHERE id = 1 ORDER BY 1")[0] == (1,)
    stop(proc)


@pytest.mark.slow
def test_resnapshot_chunk_yields_to_changes_streamed_before_its_high_watermark(cdc_env: Env) -> None:
    """DBLog: a row changed between a chunk's SELECT and its high watermark keeps the stream's value."""
    env = cdc_env
    seed(env, 10)
    proc = env.start("snapshot.after_chunk_read=pause")
    settle(env)
    sql(env.tgt, "UPDATE products SET title = 'damaged' WHERE id = 7")  # only the re-copy repairs it
    out = env.cli("cdc", "snapshot", env.name, "catalog_product")
    assert out.returncode == 0, out.stderr
    faults.wait_hit(env.faults_dir, "snapshot.after_chunk_read")
    # the chunk (rows 1..10, as they were) is read; the stream now changes two of its rows
    sql(env.src, "UPDATE catalog_product SET version = 2, name = 'newer' WHERE id = 3")
    sql(env.src, "DELETE FROM catalog_product WHERE id = 5")
    faults.release(env.faults_dir, "snapshot.after_chunk_read")
    wait_for(lambda: sql(env.tgt, "SELECT title FROM products WHERE id = 7") == [("p7",)], 30,
             "the re-copied chunk to commit")
    assert target_rows(env.tgt) == source_rows(env.src)  # not the chunk's stale row 3, no resurrected row 5
    stop(proc)


@pytest.mark.slow
@pytest.mark.parametrize("point", ["sink.before_commit", "sink.after_commit"])
def test_crash_at_the_target_commit_loses_nothing_and_applies_nothing_twice(cdc_env: Env, point: str) -> None:
    """Each table's position commits with its rows: a kill -9 on either side of the commit."""
    env = cdc_env
    seed(env, 10)
    sql(env.tgt, PROPOSED_LOG)
    first_run(env)
    for version in (2, 3, 4):  # three transactions, each a newer image of rows 1 and 2
        sql(env.src, f"UPDATE catalog_product SET version = {version} WHERE id IN (1, 2)")
        sql(env.src, f"INSERT INTO catalog_product (category_id, name, price) VALUES (1, 'v{version}', 1)")
    proc = env.start(f"{point}=exit")
    assert proc.wait(30) == faults.FAULT_EXIT, env.log_text()[-2000:]
    proc = env.start()
    settle(env)
    assert target_rows(env.tgt) == source_rows(env.src)  # nothing lost (before the commit) ...
    assert proposed_twice(env) == []  # ... and nothing replayed onto the target (after it)
    stop(proc)


@pytest.mark.slow
def test_slot_is_never_acknowledged_past_a_transaction_the_sink_has_not_committed(cdc_env: Env) -> None:
    """Acknowledge late: the capture keeps polling and acknowledging while the sink holds a
    transaction uncommitted; the slot must not pass it, so a kill -9 then loses nothing."""
    env = cdc_env
    seed(env, 5)
    first_run(env)
    sql(env.src, "UPDATE catalog_product SET version = 2, name = 'held' WHERE id = 1")
    # the insert position: with synchronous_commit off (devstack) the write position may not
    # have passed the commit yet, and a slot already there would look as if it confirmed it
    after_it = sql(env.src, "SELECT pg_current_wal_insert_lsn()::text")[0][0]
    proc = env.start("sink.before_commit=pause;capture.after_acknowledge=count")
    faults.wait_hit(env.faults_dir, "sink.before_commit")
    # acknowledgements that began after the sink took the transaction (so after it was
    # published): the first is the one that would confirm it, the second gives the server its
    # feedback message a full poll round to process
    acks = faults.hits(env.faults_dir, "capture.after_acknowledge")
    wait_for(lambda: faults.hits(env.faults_dir, "capture.after_acknowledge") >= acks + 2, 30,
             "the capture to acknowledge twice more")
    passed = sql(env.src, "SELECT confirmed_flush_lsn >= %s::pg_lsn FROM pg_replication_slots "
                          "WHERE database = current_database()", (after_it,))
    proc.kill()  # while the sink is still paused before its commit
    proc.wait()
    assert passed == [(False,)], "the slot confirmed a transaction the target never committed"
    proc = env.start()
    settle(env)
    assert target_rows(env.tgt) == source_rows(env.src)
    stop(proc)


class GatedTransport(DirectTransport):
    """The direct transport with its apply side held while `open` is clear; it records the
    fullest queue any publish found before adding its events."""

    def __init__(self, max_pending: int) -> None:
        super().__init__(max_pending=max_pending)
        self.open = threading.Event()
        self.open.set()
        self.full = threading.Event()  # a publish found the queue at its bound
        self.worst = 0

    def publish(self, events: Sequence[ChangeEvent]) -> None:
        if self.pending() >= self.max_pending:
            self.full.set()
        super().publish(events)
        # with the apply side held nothing is consumed meanwhile: this is the queue a bounded
        # publish waited to see shrink below max_pending
        self.worst = max(self.worst, self.pending() - len(events))

    def receive(self, max_events: int, timeout: float = 0.0) -> Batch:
        if not self.open.is_set():
            self.open.wait(timeout)
            return Batch()
        return super().receive(max_events, timeout)


@pytest.mark.slow
def test_large_transaction_is_one_target_transaction_and_never_queued_whole(cdc_env: Env) -> None:
    """A 20k-row source transaction: applied in batches of 500 into one target transaction,
    and the capture never queues more than the transport's bound while the sink is behind."""
    env = cdc_env
    seed(env, 5)
    transport = GatedTransport(max_pending=1000)
    # the target transaction of each statement the sink runs on products (rows in its
    # savepoints carry subtransaction xids, so xmin would not tell)
    sql(env.tgt, """CREATE TABLE write_log (txid bigint);
                    CREATE FUNCTION log_write() RETURNS trigger AS $$
                    BEGIN INSERT INTO write_log VALUES (txid_current()); RETURN NULL; END $$ LANGUAGE plpgsql;""")
    with running(config(env, batch_size=500), transport=transport):
        sql(env.src, "UPDATE catalog_product SET version = 2 WHERE id = 1")  # the relation is known
        settle(env)
        sql(env.tgt, "CREATE TRIGGER products_written AFTER INSERT ON products "
                     "FOR EACH STATEMENT EXECUTE FUNCTION log_write()")
        transport.open.clear()  # the sink falls behind
        sql(env.src, "INSERT INTO catalog_product (category_id, name, price) "
                     "SELECT 1, 'bulk' || g, 1 FROM generate_series(1, 20000) g")
        assert transport.full.wait(60), "the capture never filled the transport"
        transport.open.set()
        settle(env)
    assert transport.worst < transport.max_pending, f"{transport.worst} events queued past the bound"
    assert sql(env.tgt, "SELECT count(*) FROM products WHERE title LIKE 'bulk%'") == [(20000,)]
    assert sql(env.tgt, "SELECT count(*) >= 40, count(DISTINCT txid) FROM write_log") == [(True, 1)]
    assert target_rows(env.tgt) == source_rows(env.src)


def test_unchanged_toast_value_is_filled_from_a_replica_identity_full_old_row(cdc_env: Env) -> None:
    """A row enters the stream's filter by an update that leaves its TOASTed column alone: the
    target has never seen the row, so only the full old row (REPLICA IDENTITY FULL) can fill it."""
    env = cdc_env
    seed(env, 3)
    sql(env.src, "ALTER TABLE catalog_product REPLICA IDENTITY FULL")
    big = "".join(f"{i:08x}{i * 7919 % 65536:08x}" for i in range(600))  # > 2 kB, incompressible enough
    sql(env.src, "UPDATE catalog_product SET description = %s WHERE id = 2", (big,))
    with running(config(env, product={"filter": [{"column": "price", "op": "gte", "value": 10}]})):
        settle(env)
        assert sql(env.tgt, "SELECT count(*) FROM products") == [(0,)]  # prices 1..3: all filtered out
        sql(env.src, "UPDATE catalog_product SET price = 50, version = 2 WHERE id = 2")  # enters it
        settle(env)
    assert sql(env.tgt, "SELECT version, description FROM products") == [(2, big)]
