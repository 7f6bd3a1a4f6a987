"""Fixtures of the devstack tests: the session's real Kafka broker."""

from tests.kafka_fixtures import kafka_broker

__all__ = ["kafka_broker"]
