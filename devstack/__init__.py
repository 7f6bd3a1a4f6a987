"""Throwaway local services (PostgreSQL, Kafka, Debezium beside our capture,
Debezium's JDBC sink in Kafka Connect) for tests, benchmarks
and `strangler up --real`.

Imports none of the project's parts, so any of them may use it.
"""

from devstack.debezium import DebeziumConnector
from devstack.errors import ServiceUnavailable
from devstack.kafka import KafkaServer
from devstack.kafka_connect import JdbcSink
from devstack.ports import free_port
from devstack.postgres import PostgresServer

__all__ = ["DebeziumConnector", "JdbcSink", "KafkaServer", "PostgresServer", "ServiceUnavailable", "free_port"]
