"""cdc/drain.py over Kafka: a marker written into an idle source reaches the target's
checkpoint (a MARK record on the transaction topic), and only after every change committed
before it — what `strangler own` waits for before it flips writes."""

from __future__ import annotations

import uuid

import pytest

from cdc import drain
from devstack import KafkaServer
from tests.cdc.conftest import Env, sql, wait_for
from tests.cdc.test_stream_features import config
from tests.kafka_fixtures import streaming_over_kafka

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]


def test_marker_on_an_idle_kafka_stream_is_applied_after_what_precedes_it(kafka_broker: KafkaServer,
                                                                          cdc_env: Env) -> None:
    env = cdc_env
    cfg = config(env, transport={"kind": "kafka", "bootstrap": kafka_broker.bootstrap,
                                 "topic_prefix": f"drain{uuid.uuid4().hex[:8]}"})
    sql(env.src, "INSERT INTO catalog_category (name) VALUES ('first')")
    with streaming_over_kafka(cfg):
        wait_for(lambda: sql(env.tgt, "SELECT count(*) FROM categories") == [(1,)], 60, "the copy")
        sql(env.src, "INSERT INTO catalog_category (name) SELECT 'c' || g FROM generate_series(1, 300) g")
        at = drain.mark(cfg)  # nothing changes after it: only the marker can move the checkpoint
        assert drain.wait_applied_to(cfg, at, timeout=30)
        assert sql(env.tgt, "SELECT count(*) FROM categories") == [(301,)]
        idle = drain.mark(cfg)
        assert idle > at and drain.wait_applied_to(cfg, idle, timeout=30)
