"""One active applier per Kafka stream (cdc/lease.py), with real apply processes: a stand-by
takes over from a dead holder in the middle of a 20,000-event transaction, and a holder
that was paused past its lease is fenced — nothing lost, nothing applied twice."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from cdc import faults
from devstack import KafkaServer
from tests.cdc.conftest import sql
from tests.cdc.kafka.test_pipeline_kafka import KafkaEnv, caught_up, drop_slot, make_env

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow]

LEASE = 2  # seconds


def _holder_pid(env: KafkaEnv) -> int | None:
    """The pid of the apply process that reports itself streaming (it holds the lease)."""
    try:
        m = json.loads((env.folder / "state" / "cdc" / f"{env.name}.apply.json").read_text())
    except (OSError, ValueError):
        return None
    return int(m["pid"]) if m.get("state") == "streaming" else None


def _started(env: KafkaEnv, *, seed_rows: int = 3) -> None:
    """Capture and one applier ("first") through the initial copy; then `first` stops cleanly
    (releasing the lease), so each test starts its appliers on a quiet, caught-up stream."""
    sql(env.src, "INSERT INTO catalog_category (name) VALUES ('one')")
    sql(env.src, "INSERT INTO catalog_product (category_id, name, price) "
                 f"SELECT 1, 'p' || g, g FROM generate_series(1, {seed_rows}) g")
    env.start_part("capture")
    first = env.start_part("apply", label="first")
    env.wait(lambda: caught_up(env), 60, "the initial copy")
    first.send_signal(signal.SIGTERM)
    assert first.wait(30) == 0, env.part_log("first")


def _holder_and_standby(env: KafkaEnv, *, pause_at: int) -> tuple[Any, Any]:
    """Applier `a`, which holds the lease and pauses before writing its `pause_at`-th batch,
    and applier `b`, standing by."""
    a = env.start_part("apply", label="a", faults=f"apply.before_write=pause@{pause_at}")
    env.wait(lambda: _holder_pid(env) == a.pid, 60, "a to hold the lease")
    b = env.start_part("apply", label="b")
    env.wait(lambda: "standing by" in env.part_log("b"), 60, "b to stand by")
    return a, b


def _applied_once(env: KafkaEnv) -> None:
    dupes = sql(env.tgt, "SELECT id, version, count(*) FROM applied_log GROUP BY 1, 2 HAVING count(*) > 1")
    assert dupes == [], f"applied twice: {dupes[:5]}"


def test_standby_takes_over_mid_transaction_from_a_killed_holder(kafka_broker: KafkaServer, pg_server: Any,
                                                                 tmp_path: Path) -> None:
    env = make_env(pg_server, tmp_path, kafka_broker, lease_seconds=LEASE)
    try:
        _started(env)
        # `a` pauses before writing its third batch: two batches of the big transaction are
        # written in its open target transaction, which holds the lease row
        a, b = _holder_and_standby(env, pause_at=3)
        # `cdc status` says who applies and who stands by
        shown = json.loads(env.cli("cdc", "status", env.name, "--json").stdout)["streams"][0]
        assert shown["lease"]["holder"].split(":")[1] == str(a.pid) and shown["lease"]["state"] == "held"
        assert [s["pid"] for s in shown["standby"]] == [b.pid], shown
        conn = psycopg2.connect(env.src)
        with conn, conn.cursor() as cur:  # one source transaction of 20,001 events
            cur.execute("INSERT INTO catalog_product (category_id, name, price) "
                        "SELECT 1, 'bulk' || g, g FROM generate_series(1, 20000) g")
            cur.execute("UPDATE catalog_category SET name = 'renamed' WHERE id = 1")
        conn.close()
        faults.wait_hit(env.faults_dir, "apply.before_write", timeout=120)
        # a's lease runs out while it is stuck inside the transaction, but the open
        # transaction keeps the row locked: b must not apply meanwhile
        time.sleep(3 * LEASE)
        assert b.poll() is None and "holding the lease" not in env.part_log("b"), env.part_log("b")
        assert sql(env.tgt, "SELECT count(*) FROM products WHERE title LIKE 'bulk%'") == [(0,)]
        a.send_signal(signal.SIGKILL)  # dies mid-transaction: its writes roll back
        a.wait()
        env.wait(lambda: caught_up(env), 120, "b to take over and apply the whole transaction")
        assert "holding the lease" in env.part_log("b")
        assert _holder_pid(env) == b.pid
        shown = json.loads(env.cli("cdc", "status", env.name, "--json").stdout)["streams"][0]
        assert "standby" not in shown and shown["lease"]["holder"].split(":")[1] == str(b.pid), shown
        assert sql(env.tgt, "SELECT count(*) FROM applied_log WHERE id > 3") == [(20000,)]
        _applied_once(env)
        assert sql(env.tgt, "SELECT name FROM categories") == [("renamed",)]
    finally:
        env.stop_all()
        drop_slot(env)


def test_a_holder_paused_past_its_lease_is_fenced_and_stands_by(kafka_broker: KafkaServer, pg_server: Any,
                                                                tmp_path: Path) -> None:
    env = make_env(pg_server, tmp_path, kafka_broker, lease_seconds=LEASE)
    try:
        _started(env)
        # `a` takes the next batch and stops before opening its target transaction: the
        # lease row is not locked, and a does not renew it while it is stuck
        a, b = _holder_and_standby(env, pause_at=1)
        sql(env.src, "INSERT INTO catalog_product (id, category_id, name, price) VALUES (101, 1, 'x', 1)")
        faults.wait_hit(env.faults_dir, "apply.before_write", timeout=60)
        env.wait(lambda: sql(env.tgt, "SELECT count(*) FROM products WHERE id = 101") == [(1,)], 60,
                 "b to take over the expired lease and apply the row a holds")
        faults.release(env.faults_dir, "apply.before_write")  # a wakes up with a stale batch
        env.wait(lambda: "taken over" in env.part_log("a"), 30, "a to find itself fenced")
        assert a.poll() is None, env.part_log("a")  # a stands by; it does not die
        sql(env.src, "INSERT INTO catalog_product (id, category_id, name, price) VALUES (102, 1, 'y', 2)")
        env.wait(lambda: caught_up(env), 60, "b to apply what follows")
        b.send_signal(signal.SIGKILL)
        b.wait()
        sql(env.src, "INSERT INTO catalog_product (id, category_id, name, price) VALUES (103, 1, 'z', 3)")
        env.wait(lambda: caught_up(env), 60, "a to take over again from the killed b")
        assert _holder_pid(env) == a.pid
        _applied_once(env)
        assert sql(env.tgt, "SELECT count(*) FROM applied_log WHERE id > 100") == [(3,)]
    finally:
        env.stop_all()
        drop_slot(env)


def test_broker_restart_in_the_middle_of_a_transaction(kafka_broker: KafkaServer, pg_server: Any,
                                                       tmp_path: Path) -> None:
    if not kafka_broker.owned:
        pytest.skip("restarts the broker: needs one this session started")
    env = make_env(pg_server, tmp_path, kafka_broker, lease_seconds=LEASE)
    try:
        _started(env)
        a = env.start_part("apply", label="a", faults="apply.before_write=pause@3")
        env.wait(lambda: _holder_pid(env) == a.pid, 60, "a to hold the lease")
        conn = psycopg2.connect(env.src)
        with conn, conn.cursor() as cur:
            cur.execute("INSERT INTO catalog_product (category_id, name, price) "
                        "SELECT 1, 'bulk' || g, g FROM generate_series(1, 20000) g")
        conn.close()
        faults.wait_hit(env.faults_dir, "apply.before_write", timeout=120)  # two batches written
        kafka_broker.halt(hard=True)
        faults.release(env.faults_dir, "apply.before_write")
        time.sleep(1.0)  # the applier reads on into a dead broker
        kafka_broker.resume()
        env.wait(lambda: caught_up(env), 120, "the transaction applied whole after the broker restart")
        _applied_once(env)
        assert sql(env.tgt, "SELECT count(*) FROM applied_log WHERE id > 3") == [(20000,)]
        assert a.poll() is None, env.part_log("a")
    finally:
        env.stop_all()
        drop_slot(env)
