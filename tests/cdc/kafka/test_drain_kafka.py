"""cdc/drain.py over Kafka: a marker written into an idle source reaches the target's
checkpoint (a MARK record on the transaction topic), and only after every change committed
before it — what `strangler own` waits for before it flips writes."""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Iterator

import pytest

from cdc import drain
from cdc.config import StreamConfig
from cdc.transport import kafka_run
from devstack import KafkaServer
from tests.cdc.conftest import Env, sql, wait_for
from tests.cdc.test_stream_features import config

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]


@contextlib.contextmanager
def over_kafka(cfg: StreamConfig) -> Iterator[None]:
    stop = threading.Event()
    errors: list[BaseException] = []

    def go() -> None:
        try:
            kafka_run.run(cfg, "both", stop, on_tick=lambda m: None)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    th = threading.Thread(target=go)
    th.start()
    try:
        yield
    finally:
        stop.set()
        th.join(60)
    assert not errors, errors


def test_marker_on_an_idle_kafka_stream_is_applied_after_what_precedes_it(kafka_broker: KafkaServer,
                                                                          cdc_env: Env) -> None:
    env = cdc_env
    cfg = config(env, transport={"kind": "kafka", "bootstrap": kafka_broker.bootstrap,
                                 "topic_prefix": f"drain{uuid.uuid4().hex[:8]}"})
    sql(env.src, "INSERT INTO catalog_category (name) VALUES ('first')")
    with over_kafka(cfg):
        wait_for(lambda: sql(env.tgt, "SELECT count(*) FROM categories") == [(1,)], 60, "the copy")
        sql(env.src, "INSERT INTO catalog_category (name) SELECT 'c' || g FROM generate_series(1, 300) g")
        at = drain.mark(cfg)  # nothing changes after it: only the marker can move the checkpoint
        assert drain.wait_applied_to(cfg, at, timeout=30)
        assert sql(env.tgt, "SELECT count(*) FROM categories") == [(301,)]
        idle = drain.mark(cfg)
        assert idle > at and drain.wait_applied_to(cfg, idle, timeout=30)
