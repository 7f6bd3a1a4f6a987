"""The capture's durable position passes a message only once Kafka acknowledged it and every
message before it, however the acknowledgements come (they come per partition, so out of
order across topics). A producer that holds every delivery report until told stands in for
the broker here; the real broker's outage is tests/cdc/kafka/test_transport.py's."""

from __future__ import annotations

from typing import Any

import pytest

from cdc.events import ChangeEvent, Position
from cdc.transport import kafka_capture
from cdc.transport.kafka_topics import KafkaSettings, KafkaTransportError


class _Held:
    """A Producer whose delivery reports wait until `deliver` releases them."""

    def __init__(self, _config: dict[str, Any]) -> None:
        self.sent: list[tuple[str, Any]] = []  # (topic, its report's callback)
        self.ready: list[tuple[Any, str, Any]] = []

    def produce(self, topic: str, value: Any = None, key: Any = None, **kw: Any) -> None:
        self.sent.append((topic, kw["on_delivery"]))

    def deliver(self, index: int, err: Any = None) -> None:
        topic, cb = self.sent[index]
        self.ready.append((cb, topic, err))

    def poll(self, _timeout: float = 0) -> int:
        ready, self.ready = self.ready, []
        for cb, topic, err in ready:
            cb(err, _Msg(topic))
        return len(ready)

    def flush(self, _timeout: float = 0) -> int:
        self.poll()
        return 0


class _Msg:
    def __init__(self, topic: str) -> None:
        self._topic = topic

    def topic(self) -> str:
        return self._topic


@pytest.fixture
def capture(monkeypatch: pytest.MonkeyPatch) -> kafka_capture.KafkaCapture:
    import confluent_kafka

    monkeypatch.setattr(confluent_kafka, "Producer", _Held)
    return kafka_capture.KafkaCapture(KafkaSettings(stream="s", bootstrap="-", topic_prefix="p", group="g"))


def _tx(lsn: int, rows: int) -> list[ChangeEvent]:
    return [ChangeEvent(op="c", table="a", key={"id": i}, before=None, after={"id": i}, position=Position(lsn, i),
                        last=i == rows) for i in range(1, rows + 1)]


def test_durable_passes_a_position_only_when_it_and_everything_before_are_acknowledged(
        capture: kafka_capture.KafkaCapture) -> None:
    capture.publish(_tx(100, 3))  # BEGIN, 3 rows, END(100#3)
    capture.publish(_tx(200, 2))  # BEGIN, 2 rows, END(200#2)
    producer: _Held = capture._producer
    assert len(producer.sent) == 5 + 4
    for i in (8, 7, 6, 5, 4, 3, 1, 0):  # all but the first transaction's second row, newest first
        producer.deliver(i)
    assert capture.durable() is None
    producer.deliver(2)
    assert capture.durable() == Position(200, 2)
    assert capture.in_flight() == 0
    capture.publish(_tx(300, 1))
    for i in (9, 11):  # its BEGIN and END, not its row
        producer.deliver(i)
    assert capture.durable() == Position(200, 2)
    producer.deliver(10)
    assert capture.durable() == Position(300, 1)


def test_a_message_kafka_refused_stops_the_capture(capture: kafka_capture.KafkaCapture) -> None:
    capture.publish(_tx(100, 1))
    producer: _Held = capture._producer
    producer.deliver(0)
    producer.deliver(1, err="broker said no")
    with pytest.raises(KafkaTransportError, match=r"p\.public\.a: broker said no"):
        capture.durable()
