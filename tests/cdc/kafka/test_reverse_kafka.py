"""The forward stream and its reverse at once, both over a real Kafka broker (PostgreSQL on
both sides): each change reaches the other side exactly once and nothing bounces back
(the scenario and its checks: tests/cdc/test_reverse.py)."""

from __future__ import annotations

import uuid

import pytest

from cdc.config import parse
from devstack import KafkaServer
from tests.cdc.conftest import Env
from tests.cdc.test_reverse import exchange, pair_spec, pg_pair
from tests.kafka_fixtures import streaming_over_kafka

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow]


def test_both_directions_over_kafka_exactly_once_and_no_echo(kafka_broker: KafkaServer, cdc_env: Env) -> None:
    a, b = pg_pair(cdc_env)
    spec = pair_spec(cdc_env.src, cdc_env.tgt)
    for name, body in spec["streams"].items():
        body["transport"] = {"kind": "kafka", "bootstrap": kafka_broker.bootstrap,
                             "topic_prefix": f"t{uuid.uuid4().hex[:8]}{name}"}
    with streaming_over_kafka(*parse(spec).streams.values()):
        exchange(a, b)
