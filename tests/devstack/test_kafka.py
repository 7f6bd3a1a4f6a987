import os
import uuid

import pytest
from confluent_kafka import Consumer, Producer

from devstack import KafkaServer, ServiceUnavailable
from devstack.kafka import ENV_BOOTSTRAP, ENV_CACHE, check_reachable

pytestmark = pytest.mark.kafka


def _produce(bootstrap: str, topic: str, *values: bytes) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all"})
    for value in values:
        producer.produce(topic, key=b"k", value=value)
    assert producer.flush(30) == 0


def _consume_all(bootstrap: str, topic: str, expected: int) -> list[bytes]:
    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": f"g-{uuid.uuid4().hex}",
        "auto.offset.reset": "earliest", "enable.auto.commit": False,
    })
    consumer.subscribe([topic])
    got: list[bytes] = []
    try:
        for _ in range(300):
            msg = consumer.poll(0.1)
            if msg is not None and msg.error() is None:
                got.append(msg.value())
            if len(got) >= expected:
                break
    finally:
        consumer.close()
    return got


def test_message_round_trip(kafka_broker: KafkaServer) -> None:
    topic = f"t-{uuid.uuid4().hex[:8]}"
    _produce(kafka_broker.bootstrap, topic, b"one", b"two")
    assert _consume_all(kafka_broker.bootstrap, topic, 2) == [b"one", b"two"]


def test_broker_is_single_node_kraft_on_loopback(kafka_broker: KafkaServer) -> None:
    from confluent_kafka.admin import AdminClient

    meta = AdminClient({"bootstrap.servers": kafka_broker.bootstrap}).list_topics(timeout=10)
    assert [b.host for b in meta.brokers.values()] == ["127.0.0.1"]


def test_restart_keeps_data_and_stop_removes_it(kafka_broker: KafkaServer, monkeypatch) -> None:
    monkeypatch.delenv(ENV_BOOTSTRAP, raising=False)
    server = KafkaServer(heap="256m").start()  # a private broker: this test kills it
    try:
        topic = "kept"
        _produce(server.bootstrap, topic, b"before")
        # kill -9 (a graceful halt/resume is exercised by the CDC fault test): the page cache
        # still holds what was acknowledged
        server.restart(hard=True)
        assert server.running
        _produce(server.bootstrap, topic, b"after")
        assert _consume_all(server.bootstrap, topic, 2) == [b"before", b"after"]
        root = server.datadir
    finally:
        server.stop()
    assert not os.path.exists(root)
    assert not server.running


def test_existing_broker_is_used_and_left_running(kafka_broker: KafkaServer, monkeypatch) -> None:
    monkeypatch.setenv(ENV_BOOTSTRAP, kafka_broker.bootstrap)
    other = KafkaServer().start()
    assert other.bootstrap == kafka_broker.bootstrap and not other.owned
    other.stop()
    check_reachable(kafka_broker.bootstrap, timeout=5)
    with pytest.raises(ServiceUnavailable, match="did not start"):
        other.restart()


def test_missing_java_says_so(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv(ENV_BOOTSTRAP, raising=False)
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ServiceUnavailable, match="Java was not found.*apt-get install openjdk-17"):
        KafkaServer().start()


def test_missing_maven_says_so(monkeypatch, tmp_path) -> None:
    import shutil

    java = shutil.which("java")
    if java is None:
        pytest.skip("no java on this machine: test_missing_java_says_so covers it")
    (tmp_path / "bin").mkdir()
    os.symlink(java, tmp_path / "bin" / "java")
    monkeypatch.delenv(ENV_BOOTSTRAP, raising=False)
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    monkeypatch.setenv(ENV_CACHE, str(tmp_path / "cache"))  # nothing fetched yet
    with pytest.raises(ServiceUnavailable, match="Maven was not found.*apt-get install maven"):
        KafkaServer().start()
