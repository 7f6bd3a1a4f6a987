"""The session's Kafka broker, shared by every suite that needs one.

Imported by the conftest of each such suite (``tests/devstack``, ``tests/cdc/kafka``); the
broker is started once per session however many suites ask for it, and stopped at the end.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devstack import KafkaServer, ServiceUnavailable
from tests.conftest import service_missing

_shared: KafkaServer | None = None


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[KafkaServer]:
    """One real Apache Kafka broker (KRaft, single node) for the whole session."""
    global _shared
    if _shared is None:
        server = KafkaServer()
        try:
            server.start()
        except ServiceUnavailable as exc:
            service_missing("Apache Kafka", exc)
        _shared = server
    try:
        yield _shared
    finally:
        # Every suite's copy of this fixture ends with the session; stopping twice is harmless.
        _shared.stop()
