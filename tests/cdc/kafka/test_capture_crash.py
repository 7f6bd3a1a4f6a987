"""A Kafka stream's capture half killed (-9) in the middle of its initial copy: the copy
resumes after the last chunk Kafka holds (kept on the stream's progress topic, never in the
target), and the target ends equal to the source with every row copied once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition

from cdc import config, faults
from cdc.transport import kafka_progress
from cdc.transport.kafka_topics import KafkaSettings
from devstack import KafkaServer
from tests.cdc.conftest import sql
from tests.cdc.kafka.test_pipeline_kafka import caught_up, drop_slot, make_env

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow]

ROWS, CHUNK = 3000, 300  # the stream's snapshot_chunk (tests/cdc/conftest.py)


def _messages(bootstrap: str, topic: str) -> int:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "count"})
    try:
        low, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        return int(high - low)
    finally:
        c.close()


def test_capture_killed_during_the_initial_copy_resumes_after_the_last_chunk_kafka_holds(
        kafka_broker: KafkaServer, pg_server: Any, tmp_path: Path) -> None:
    env = make_env(pg_server, tmp_path, kafka_broker)
    settings = KafkaSettings.from_stream(config.load(env.streams_path).streams[env.name])
    sql(env.src, "INSERT INTO catalog_category (name) VALUES ('one')")
    sql(env.src, "INSERT INTO catalog_product (category_id, name, price) "
                 f"SELECT 1, 'p' || g, g FROM generate_series(1, {ROWS}) g")
    try:
        env.start_part("apply")
        # chunk 1 is the categories'; 2..6 are products 1..1500; the 7th is not read yet
        first = env.start_part("capture", label="first", faults="snapshot.after_chunk_published=pause@6")
        faults.wait_hit(env.faults_dir, "snapshot.after_chunk_published", timeout=120)

        def recorded() -> int:
            state = kafka_progress.load(settings, timeout=10).copies.get("catalog_product")
            return int(state[2]) if state else 0

        env.wait(lambda: recorded() == 5 * CHUNK, 60, "the progress of five product chunks in Kafka")
        first.kill()  # -9, in the middle of the copy
        first.wait(30)
        # while no capture runs: a row copied already, and one the copy has not reached
        sql(env.src, "DELETE FROM catalog_product WHERE id IN (1, 2900)")
        sql(env.src, "UPDATE catalog_product SET version = version + 1 WHERE id IN (2, 2999)")
        env.start_part("capture", label="again")
        env.wait(lambda: caught_up(env), 120, "the copy resumed by the restarted capture")
        log = env.part_log("again")
        assert "copying catalog_product while streaming (watermarks), after key [1500]" in log, log
        # resumed, not started over: Kafka got products 1..1500 once and 1501..3000 once more
        # (+ 2 updates, 2 deletes and their tombstones), not a second copy of all 3,000
        topic = settings.topic("catalog_product")
        assert _messages(kafka_broker.bootstrap, topic) == ROWS - 1 + 2 + 2 * 2
        # every source row copied into the target exactly once (row 2900 went before its chunk)
        (rows,), = sql(env.tgt, "SELECT rows FROM strangler_cdc_snapshot WHERE stream = %s "
                                "AND source_table = 'catalog_product'", (env.name,))
        assert rows == ROWS - 1
    finally:
        env.stop_all()
        drop_slot(env)
