"""The forward stream and its reverse at once, both over a real Kafka broker (PostgreSQL on
both sides): each change reaches the other side exactly once and nothing bounces back
(the scenario and its checks: tests/cdc/test_reverse.py)."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest

from cdc.config import parse
from cdc.transport import kafka_run
from devstack import KafkaServer
from tests.cdc.conftest import Env
from tests.cdc.test_reverse import exchange, pair_spec, pg_pair

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow]


def test_both_directions_over_kafka_exactly_once_and_no_echo(kafka_broker: KafkaServer, cdc_env: Env) -> None:
    a, b = pg_pair(cdc_env)
    spec = pair_spec(cdc_env.src, cdc_env.tgt)
    for name, body in spec["streams"].items():
        body["transport"] = {"kind": "kafka", "bootstrap": kafka_broker.bootstrap,
                             "topic_prefix": f"t{uuid.uuid4().hex[:8]}{name}"}
    stop = threading.Event()
    errors: list[BaseException] = []

    def run(cfg: Any) -> None:
        try:
            kafka_run.run(cfg, "both", stop, on_tick=lambda m: None)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(cfg,)) for cfg in parse(spec).streams.values()]
    for th in threads:
        th.start()
    try:
        exchange(a, b)
    finally:
        stop.set()
        for th in threads:
            th.join(60)
    assert not errors, errors
