"""PostgreSQL -> Kafka -> PostgreSQL through real `strangler cdc run --part ...` processes."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg2
import pytest
import yaml
from confluent_kafka import Consumer

from devstack import KafkaServer, PostgresServer, ServiceUnavailable
from tests.cdc.conftest import (
    REPO,
    SOURCE_DDL,
    TARGET_DDL,
    Env,
    source_rows,
    sql,
    stream_spec,
    target_rows,
    wait_for,
)
from tests.conftest import service_missing

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]


class KafkaEnv(Env):
    """The CDC test environment with the two halves run as separate processes."""

    parts: dict[str, subprocess.Popen[bytes]]
    prefix: str

    def start_part(self, part: str, *, label: str = "", faults: str = "",
                   streams: Path | None = None) -> subprocess.Popen[bytes]:
        """`cdc run --part` as a process, known (and logged) as `label` (default: the part);
        `faults` is a STRANGLER_CDC_FAULTS spec (cdc/faults.py) for this process only;
        `streams` another streams.yaml for it."""
        label = label or part
        env = self.env()
        if faults:
            env.update(STRANGLER_CDC_FAULTS=faults, STRANGLER_CDC_FAULTS_DIR=str(self.faults_dir))
        log = open(self.folder / f"{label}.log", "ab")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen([sys.executable, "-m", "cli.main", "cdc", "run", self.name, "--part", part,
                                 "--streams", str(streams or self.streams_path)], cwd=REPO, env=env,
                                stdout=log, stderr=log)
        self.procs.append(proc)
        self.parts[label] = proc
        return proc

    def wait(self, predicate: Any, timeout: float, what: str) -> None:
        """wait_for, with both halves' logs in the failure message."""
        try:
            wait_for(predicate, timeout, what)
        except AssertionError as exc:
            logs = "\n".join(f"--- {p}.log\n{self.part_log(p)}" for p in self.parts)
            raise AssertionError(f"{exc}\n{logs}") from None

    def part_log(self, part: str) -> str:
        p = self.folder / f"{part}.log"
        text = p.read_text(errors="replace") if p.exists() else ""
        return "\n".join(line for line in text.splitlines() if not line.startswith("%"))[-3000:]

    def revive(self) -> None:
        """Restart a half that stopped by itself (a supervisor's job: systemd, Kubernetes)."""
        for part, proc in list(self.parts.items()):
            if proc.poll() is not None:
                self.start_part(part)

    def wait_running(self, part: str, timeout: float = 60) -> None:
        """Until the current process of `part` reports itself streaming (its metrics file)."""
        path = self.folder / "state" / "cdc" / f"{self.name}.{part}.json"

        def running() -> bool:
            self.revive()  # a half may exit while PostgreSQL or Kafka comes back
            try:
                m = json.loads(path.read_text())
            except (OSError, ValueError):
                return False
            return bool(m.get("pid") == self.parts[part].pid and m.get("state") == "streaming")

        self.wait(running, timeout, f"{part} to run again")


def kafka_spec(env: Env, broker: KafkaServer) -> dict[str, Any]:
    return stream_spec(env.src, env.tgt, transport={"kind": "kafka", "bootstrap": broker.bootstrap,
                                                    "topic_prefix": f"t{uuid.uuid4().hex[:8]}"})


def make_env(server: PostgresServer, folder: Path, broker: KafkaServer, **transport: Any) -> KafkaEnv:
    tag = os.urandom(4).hex()
    src = server.create_database(f"src_{tag}")
    tgt = server.create_database(f"tgt_{tag}")
    sql(src, SOURCE_DDL)
    sql(tgt, TARGET_DDL)
    env = KafkaEnv(src=src, tgt=tgt, folder=folder, streams_path=folder / "streams.yaml")
    env.parts = {}
    spec = kafka_spec(env, broker)
    spec["transport"].update(transport)
    env.prefix = spec["transport"]["topic_prefix"]
    env.write_streams(spec)
    return env


def drop_slot(env: Env) -> None:
    for _ in range(50):
        rows = sql(env.src, "SELECT active FROM pg_replication_slots WHERE database = current_database()")
        if not any(r[0] for r in rows):
            break
        time.sleep(0.1)
    sql(env.src, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                 "WHERE database = current_database() AND NOT active")


def caught_up(env: Env) -> bool:
    try:
        return source_rows(env.src) == target_rows(env.tgt)
    except psycopg2.Error:
        return False


def read_topic(bootstrap: str, topic: str, n: int) -> list[Any]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex, "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    out: list[Any] = []
    deadline = time.monotonic() + 30
    while len(out) < n and time.monotonic() < deadline:
        msg = c.poll(0.2)
        if msg is not None and msg.error() is None:
            out.append(msg)
    c.close()
    return out


def test_capture_and_apply_processes_keep_target_equal(kafka_broker: KafkaServer, pg_server: Any,
                                                        tmp_path: Path) -> None:
    env = make_env(pg_server, tmp_path, kafka_broker)
    prefix = env.prefix
    try:
        sql(env.src, "INSERT INTO catalog_category (name) SELECT 'cat ' || g FROM generate_series(1, 5) g")
        sql(env.src, "INSERT INTO catalog_product (category_id, name, price) "
                     "SELECT 1 + g % 5, 'p' || g, g + 0.5 FROM generate_series(1, 200) g")
        env.start_part("apply")
        env.start_part("capture")
        env.wait(lambda: caught_up(env), 60, "the initial copy through Kafka")
        # parent and child in one source transaction, in two topics: the FK must hold
        conn = psycopg2.connect(env.src)
        with conn, conn.cursor() as cur:
            cur.execute("INSERT INTO catalog_category (id, name) VALUES (1000, 'new parent')")
            cur.execute("INSERT INTO catalog_product (category_id, name, price) VALUES (1000, 'child', 3)")
            cur.execute("UPDATE catalog_product SET version = version + 1 WHERE id <= 10")
        conn.close()
        # a poison row (negative price breaks the target's CHECK) then a good one
        sql(env.src, "INSERT INTO catalog_product (id, category_id, name, price) VALUES (9001, 1, 'bad', -5)")
        sql(env.src, "INSERT INTO catalog_product (id, category_id, name, price) VALUES (9002, 1, 'good', 5)")
        wait_for(lambda: sql(env.tgt, "SELECT count(*) FROM products WHERE id = 9002") == [(1,)], 60,
                 "the changes after the poison row")
        assert sql(env.tgt, "SELECT count(*) FROM products WHERE category_id = 1000") == [(1,)]
        src, tgt = source_rows(env.src), target_rows(env.tgt)
        assert tgt["categories"] == src["categories"]
        assert tgt["products"] == [r for r in src["products"] if r[0] != 9001]
        assert sql(env.tgt, "SELECT count(*) FROM strangler_cdc_dead_letter") == [(1,)]
        dlq = read_topic(kafka_broker.bootstrap, f"{prefix}.public.catalog_product.dlq", 1)
        assert len(dlq) == 1 and "check" in dict(dlq[0].headers())["strangler.reason"].decode().lower()
        assert json.loads(dlq[0].value())["after"]["id"] == 9001
        # Debezium-shaped messages, keyed by primary key, in the per-table topic
        rows = read_topic(kafka_broker.bootstrap, f"{prefix}.public.catalog_category", 6)
        # rows only: the snapshot's markers travel on the control topic
        assert all(json.loads(m.value())["after"] is not None for m in rows)
        assert json.loads(rows[0].key()) == {"id": 1}
        assert json.loads(rows[0].value())["op"] == "r"
        snap = json.loads(rows[0].value())["source"]  # a snapshot row says where and when, as Debezium's do
        assert (snap["db"], snap["schema"], snap["snapshot"]) == (env.src.rsplit("/", 1)[1], "public", "true")
        assert snap["ts_ms"] > 1_600_000_000_000
        # the resume offsets live in the target, beside the rows
        (token,), = sql(env.tgt, f"SELECT token FROM strangler_cdc_resume WHERE stream = '{env.name}'")
        offsets = json.loads(token)["kafka"]["offsets"]
        assert offsets[f"__strangler-control.{prefix}:0"] > 0 and offsets[f"{prefix}.public.catalog_product:0"] > 200
        # `cdc status` shows both halves running, and the dead letter
        def status() -> dict[str, Any]:
            return json.loads(env.cli("cdc", "status", env.name, "--json").stdout)["streams"][0]
        wait_for(lambda: {h["state"] for h in status().get("halves", {}).values()} == {"streaming"}, 30,
                 "both halves reported as streaming by `cdc status`")
        shown = status()
        assert set(shown["halves"]) == {"capture", "apply"} and shown["dead_letters"] == 1
        for part in ("capture", "apply"):
            env.parts[part].send_signal(signal.SIGTERM)
            assert env.parts[part].wait(30) == 0, env.part_log(part)
    finally:
        env.stop_all()
        drop_slot(env)


def test_part_needs_a_kafka_stream(cdc_env: Env) -> None:
    out = cdc_env.cli("cdc", "run", cdc_env.name, "--part", "capture")
    assert out.returncode == 2 and "transport: kafka" in out.stderr


def workload(env: Env, stop: threading.Event, seed: int, stats: dict[str, int]) -> None:
    """Mixed transactions that survive a PostgreSQL restart (reconnect and go on)."""
    rng = random.Random(seed)
    conn: Any = None
    while not stop.is_set():
        try:
            if conn is None:
                conn = psycopg2.connect(env.src, connect_timeout=3)
                conn.cursor().execute("SELECT setseed(%s)", (rng.uniform(-1, 1),))  # ORDER BY random()
            cur = conn.cursor()
            cur.execute("SELECT id FROM catalog_product ORDER BY random() LIMIT 4")
            ids = [r[0] for r in cur.fetchall()]
            kind = rng.random()
            if kind < 0.3:
                cur.execute("INSERT INTO catalog_category (name) VALUES ('c') RETURNING id")
                cat = cur.fetchone()[0]  # parent and children in one transaction
                for _ in range(rng.randint(1, 4)):
                    cur.execute("INSERT INTO catalog_product (category_id, name, price) VALUES (%s, 'n', %s)",
                                (cat, rng.randint(0, 9999) / 100))
            elif kind < 0.75 and ids:
                cur.execute("UPDATE catalog_product SET version = version + 1, price = price + 0.01 "
                            "WHERE id = ANY(%s)", (ids,))
            elif kind < 0.9 and ids:
                cur.execute("DELETE FROM catalog_product WHERE id = %s", (ids[0],))
            else:
                cur.execute("UPDATE catalog_product SET version = version + 100 WHERE id = ANY(%s)", (ids,))
                conn.rollback()
                continue
            conn.commit()
            stats["txns"] += 1
        except psycopg2.Error:
            stats["errors"] += 1
            if conn is not None:
                with contextlib.suppress(psycopg2.Error):
                    conn.close()
            conn = None
            time.sleep(0.2)
        time.sleep(rng.random() * 0.01)
    if conn is not None:
        conn.close()


@pytest.mark.slow
def test_faults_lose_nothing_and_apply_nothing_twice(kafka_broker: KafkaServer, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    if not kafka_broker.owned:
        pytest.skip("stops and restarts the broker: needs one this session started")
    monkeypatch.delenv("STRANGLER_PG_DSN", raising=False)
    try:
        server = PostgresServer().start()  # private: this test restarts it
    except ServiceUnavailable as exc:
        service_missing("PostgreSQL", exc)
    env = make_env(server, tmp_path, kafka_broker)
    stats = {"txns": 0, "errors": 0}
    stop = threading.Event()
    worker = threading.Thread(target=workload, args=(env, stop, 11, stats))
    rng = random.Random(5)
    try:
        sql(env.src, "INSERT INTO catalog_category (name) SELECT 'cat ' || g FROM generate_series(1, 10) g")
        sql(env.src, "INSERT INTO catalog_product (category_id, name, price) "
                     "SELECT 1 + g % 10, 'p' || g, g FROM generate_series(1, 500) g")
        env.start_part("capture")
        env.start_part("apply")
        env.wait(lambda: caught_up(env), 60, "the initial copy")
        worker.start()
        faults = ["capture", "apply"] * 3 + ["broker", "postgres"]
        rng.shuffle(faults)
        for fault in faults:
            time.sleep(rng.uniform(0.8, 2.0))
            if fault in ("capture", "apply"):
                proc = env.parts[fault]
                proc.send_signal(signal.SIGKILL)
                proc.wait()
            elif fault == "broker":
                kafka_broker.halt()
                time.sleep(1.0)
                kafka_broker.resume()
            else:
                server.restart()
            env.revive()
            env.wait_running("capture")
            env.wait_running("apply")
        time.sleep(1.0)
    finally:
        stop.set()
        if worker.is_alive():
            worker.join()
    try:
        assert stats["txns"] > 50, stats
        env.revive()
        env.wait(lambda: caught_up(env), 120, "the target to equal the source")
        assert source_rows(env.src) == target_rows(env.tgt)
        dupes = sql(env.tgt, "SELECT id, version, count(*) FROM applied_log GROUP BY 1, 2 HAVING count(*) > 1")
        assert dupes == [], "a change was applied twice"
        # idle: the slot catches up with the server's position
        wait_for(lambda: sql(env.src, "SELECT confirmed_flush_lsn >= pg_current_wal_lsn() "
                                      "FROM pg_replication_slots") == [(True,)], 30,
                 "the idle slot to reach the server's position")
        for part in ("capture", "apply"):
            env.parts[part].send_signal(signal.SIGTERM)
            assert env.parts[part].wait(30) == 0, env.part_log(part)
    finally:
        env.stop_all()
        server.stop()


def test_both_halves_in_one_process(kafka_broker: KafkaServer, pg_server: Any, tmp_path: Path) -> None:
    env = make_env(pg_server, tmp_path, kafka_broker)
    try:
        sql(env.src, "INSERT INTO catalog_category (name) VALUES ('a'), ('b')")
        env.start_part("both")
        env.wait(lambda: caught_up(env), 60, "the initial copy")
        sql(env.src, "INSERT INTO catalog_product (category_id, name, price) VALUES (2, 'x', 1.5)")
        env.wait(lambda: caught_up(env), 60, "a streamed change")
        env.parts["both"].send_signal(signal.SIGTERM)
        assert env.parts["both"].wait(30) == 0, env.part_log("both")
    finally:
        env.stop_all()
        drop_slot(env)


def _without(spec: dict[str, Any], stream: str, side: str, path: Path) -> Path:
    """A streams.yaml for one half, where the other half's database is unreachable."""
    apart = json.loads(json.dumps(spec))
    if side == "source":
        apart["streams"][stream]["source"]["url"] = "postgresql://nobody@127.0.0.1:1/gone"
    else:
        apart["streams"][stream]["target"]["url"] = "postgresql://nobody@127.0.0.1:1/gone"
    path.write_text(yaml.safe_dump(apart))
    return path


def test_each_half_opens_only_its_own_database_and_new_columns_follow(kafka_broker: KafkaServer,
                                                                      pg_server: Any, tmp_path: Path) -> None:
    """The apply half compiles its mapping from the schemas the capture published; the capture
    half keeps where it left off in Kafka (kafka_progress.py). So each runs with the other's
    database out of reach, and a column the capture accepts (`new_columns: copy`) reaches the
    apply half in its place in the stream, which checks it against the target."""
    env = make_env(pg_server, tmp_path, kafka_broker)
    spec = yaml.safe_load(env.streams_path.read_text())
    spec["streams"][env.name]["tables"]["catalog_product"]["new_columns"] = "copy"
    env.streams_path.write_text(yaml.safe_dump(spec))
    assert "target" in spec["streams"][env.name], spec
    sql(env.tgt, "ALTER TABLE products ADD COLUMN color text")
    try:
        sql(env.src, "INSERT INTO catalog_category (name) VALUES ('one')")
        sql(env.src, "INSERT INTO catalog_product (category_id, name, price) VALUES (1, 'before', 1)")
        env.start_part("apply", streams=_without(spec, env.name, "source", tmp_path / "apply.yaml"))
        capture = _without(spec, env.name, "target", tmp_path / "capture.yaml")
        env.start_part("capture", streams=capture)
        env.wait(lambda: caught_up(env), 60, "the initial copy, applied without the source")
        # a restarted capture half resumes from its progress in Kafka: no second copy
        env.parts["capture"].send_signal(signal.SIGTERM)
        assert env.parts["capture"].wait(30) == 0, env.part_log("capture")
        env.start_part("capture", label="capture again", streams=capture)
        sql(env.src, "INSERT INTO catalog_product (category_id, name, price) VALUES (1, 'after', 4)")
        env.wait(lambda: caught_up(env), 60, "a change after the capture's restart")
        assert "copying" not in env.part_log("capture again"), env.part_log("capture again")
        conn = psycopg2.connect(env.src)
        with conn, conn.cursor() as cur:  # the new column inside a transaction, after a change
            cur.execute("UPDATE catalog_product SET version = version + 1 WHERE id = 1")
            cur.execute("ALTER TABLE catalog_product ADD COLUMN color text")
            cur.execute("INSERT INTO catalog_product (category_id, name, price, color) VALUES (1, 'new', 2, 'red')")
        conn.close()
        sql(env.src, "INSERT INTO catalog_product (category_id, name, price, color) VALUES (1, 'next', 3, 'blue')")
        env.wait(lambda: sql(env.tgt, "SELECT title, color FROM products ORDER BY id")
                 == [("before", None), ("after", None), ("new", "red"), ("next", "blue")], 60,
                 "the new column's values")
        assert caught_up(env)
    finally:
        env.stop_all()
        drop_slot(env)


def test_the_pipeline_runs_a_kafka_stream_and_unchanged_toast_travels_as_debeziums_placeholder(
        kafka_broker: KafkaServer, cdc_env: Env) -> None:
    """`Pipeline(cfg)` with `transport: {kind: kafka}` loads cdc.transport.kafka.make_transport
    (the documented plug-in point) and runs capture and apply through the broker; an
    unchanged TOASTed value travels as Debezium's placeholder and is never written."""
    from cdc.pipeline import Pipeline
    from cdc.transport.kafka import KafkaTransport
    from tests.cdc.test_stream_features import BIG, config, equal, running, seed

    env = cdc_env
    seed(env, 3)
    sql(env.src, f"UPDATE catalog_product SET description = ({BIG}) WHERE id = 2")
    prefix = f"t{uuid.uuid4().hex[:8]}"
    cfg = config(env, transport={"kind": "kafka", "bootstrap": kafka_broker.bootstrap, "topic_prefix": prefix})
    assert isinstance(Pipeline(cfg).transport, KafkaTransport)
    with running(cfg):
        wait_for(equal(env), 60, "the copy through Kafka")
        sql(env.src, "UPDATE catalog_product SET price = 9.5, version = version + 1 WHERE id = 2")
        wait_for(equal(env), 60, "the update")
    big = sql(env.src, "SELECT description FROM catalog_product WHERE id = 2")[0][0]
    assert len(big) == 9600 and sql(env.tgt, "SELECT description FROM products WHERE id = 2") == [(big,)]
    assert sql(env.tgt, "SELECT id, version FROM applied_log GROUP BY 1, 2 HAVING count(*) > 1") == []
    msgs = read_topic(kafka_broker.bootstrap, f"{prefix}.public.catalog_product", 4)
    # the copy once (no second copy by watermarks once it was in Kafka), then the update
    assert [json.loads(m.value())["op"] for m in msgs] == ["r", "r", "r", "u"]
    update = json.loads(msgs[-1].value())
    assert update["after"]["description"] == "__debezium_unavailable_value"
    assert update["source"]["unchanged"] == ["description"]
