"""Throwaway local services (PostgreSQL, Kafka) for tests, benchmarks and `strangler up --real`.

Imports none of the project's parts, so any of them may use it.
"""

from devstack.errors import ServiceUnavailable
from devstack.kafka import KafkaServer
from devstack.ports import free_port
from devstack.postgres import PostgresServer

__all__ = ["KafkaServer", "PostgresServer", "ServiceUnavailable", "free_port"]
