"""Fixtures of the Kafka transport's tests: the session's real broker."""

from tests.kafka_fixtures import kafka_broker

__all__ = ["kafka_broker"]
