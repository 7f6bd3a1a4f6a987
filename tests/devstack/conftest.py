"""Fixtures of the devstack tests: the session's real Kafka broker."""

from tests.kafka_fixtures import debezium_runtime, kafka_broker

__all__ = ["debezium_runtime", "kafka_broker"]
