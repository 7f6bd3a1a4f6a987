"""The session's Kafka broker, shared by every suite that needs one, and streams run over it.

Imported by the conftest of each such suite (``tests/devstack``, ``tests/cdc/kafka``); the
broker is started once per session however many suites ask for it, and stopped at the end.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

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


@pytest.fixture(scope="module")
def debezium_runtime() -> Iterator[tuple[str, str]]:
    """Java, the jars and the compiled runner of Debezium's connector (fetched on first use);
    else skip, or fail in CI."""
    from devstack import debezium

    try:
        yield debezium.debezium_runtime()
    except ServiceUnavailable as exc:
        service_missing("Debezium", exc)


@pytest.fixture(scope="module")
def jdbc_sink_runtime() -> Iterator[tuple[str, str]]:
    """Java and the jars of Kafka Connect with Debezium's JDBC sink (fetched on first use);
    else skip, or fail in CI, saying what Maven Central refused."""
    from devstack import kafka_connect

    try:
        yield kafka_connect.connect_runtime()
    except ServiceUnavailable as exc:
        service_missing("Kafka Connect with Debezium's JDBC sink", exc)


@contextlib.contextmanager
def streaming_over_kafka(*cfgs: Any) -> Iterator[list[BaseException]]:
    """Each stream's capture and apply over Kafka (`kafka_run.run(cfg, "both")`), each in a
    thread, for the block; yields the list their errors land in (check it while waiting),
    and raises them once the streams have stopped."""
    from cdc.transport import kafka_run

    stop = threading.Event()
    errors: list[BaseException] = []

    def run(cfg: Any) -> None:
        try:
            kafka_run.run(cfg, "both", stop, on_tick=lambda m: None)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(cfg,), name=f"kafka-{cfg.name}") for cfg in cfgs]
    for th in threads:
        th.start()
    try:
        yield errors
    finally:
        stop.set()
        for th in threads:
            th.join(60)
    assert not errors, errors
