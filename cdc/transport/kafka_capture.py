"""The Kafka transport's capture end: source events -> the stream's topics.

Each event goes to its table's topic, keyed by the primary key as JSON (so one row's
changes stay in order), the value in the Debezium envelope with a ``transaction`` block
(id, total_order, data_collection_order). ``<prefix>.transaction`` carries a BEGIN and an
END record per source transaction (Debezium's transaction metadata; END says how many
events each table's topic got), and MARK records for positions with no change (a drain
marker: a logical message in a transaction of its own).

An idempotent producer with ``acks=all``; ``durable()`` is the position of the last event
such that Kafka acknowledged it *and every message before it*, so the source (slot flush
LSN, SQLite changelog id) never advances past something Kafka could still lose.

Transaction ids are ``<epoch>:<n>``: a capture process numbers the transactions it
publishes under its own epoch (start time in ns), so a transaction re-published after a
capture crash is a new id, and the apply end can tell one cut short by the crash (BEGIN
without END when a newer epoch begins) from one that is only late.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

from cdc.events import ChangeEvent, Position, json_default
from cdc.transport.kafka_topics import KafkaSettings, KafkaTransportError, ensure_topics


class KafkaCapture:
    """Publishes events to Kafka; ``durable()`` follows Kafka's acknowledgements in order."""

    def __init__(self, settings: KafkaSettings, tables: Sequence[str] = ()) -> None:
        from confluent_kafka import Producer

        self.settings = settings
        if tables:
            ensure_topics(settings, tables)
        self._producer = Producer({
            "bootstrap.servers": settings.bootstrap,
            "enable.idempotence": True, "acks": "all",
            "linger.ms": settings.linger_ms, "batch.num.messages": 10000,
            "compression.type": settings.compression,
            "message.timeout.ms": 0,  # never give up on a message: a broker outage only stalls
            "queue.buffering.max.messages": 200_000,
        })
        self._epoch = time.time_ns()
        self._n = 0  # transactions started under this epoch
        self._open: tuple[str, int, dict[str, int]] | None = None  # id, order, per-table counts
        self._first: ChangeEvent | None = None
        self._pending: deque[list[Any]] = deque()  # [position | None, delivered] per message
        self._durable: Position | None = None
        self._error: str | None = None
        self.published = 0

    def _send(self, topic: str, key: bytes | None, value: bytes, position: Position | None) -> None:
        entry = [position, False]
        self._pending.append(entry)

        def delivered(err: Any, _msg: Any, entry: list[Any] = entry) -> None:
            if err is not None:
                self._error = f"Kafka did not take a message for {topic}: {err}"
            else:
                entry[1] = True

        while True:
            try:
                self._producer.produce(topic, key=key, value=value, on_delivery=delivered)
                return
            except BufferError:  # the local queue is full: wait for the broker (backpressure)
                self._producer.poll(0.1)
                self._check()

    def _tx_record(self, status: str, tx_id: str, first: ChangeEvent,
                   counts: dict[str, int] | None, position: Position | None) -> None:
        record: dict[str, Any] = {
            "status": status, "id": tx_id, "ts_ms": first.ts_ms, "source_tx_id": first.tx_id,
            "event_count": sum(counts.values()) if counts is not None else None,
            "data_collections": [{"data_collection": self.settings.collection(t), "event_count": n}
                                 for t, n in counts.items()] if counts else None,
        }
        self._send(self.settings.tx_topic, tx_id.encode(),
                   json.dumps(record, separators=(",", ":")).encode(), position)

    def publish(self, events: Sequence[ChangeEvent]) -> None:
        self._check()
        for ev in events:
            if ev.op == "m":  # a message carries nothing downstream: durable behind the rest
                self._message(ev)
                continue
            if self._open is None:
                self._n += 1
                self._open = (f"{self._epoch}:{self._n}", 0, {})
                self._first = ev
                self._tx_record("BEGIN", self._open[0], ev, None, None)
            tx_id, order, counts = self._open
            order += 1
            counts[ev.table] = counts.get(ev.table, 0) + 1
            self._open = (tx_id, order, counts)
            env = ev.to_envelope()
            env["transaction"] = {"id": tx_id, "total_order": order,
                                  "data_collection_order": counts[ev.table]}
            value = json.dumps(env, default=json_default, separators=(",", ":")).encode()
            # Durable only with its END record: a half-published transaction is not durable.
            self._send(self.settings.topic(ev.table), ev.key_json(), value, None)
            if ev.last:
                assert self._first is not None
                self._tx_record("END", tx_id, self._first, counts, ev.position)
                self._open = self._first = None
            self.published += 1
        self._producer.poll(0)

    def _message(self, ev: ChangeEvent) -> None:
        if not ev.last:
            return
        if self._open is not None and self._first is not None:  # it ends a transaction
            self._tx_record("END", self._open[0], self._first, self._open[2], ev.position)
            self._open = self._first = None
            return
        # A message alone (a drain marker, `strangler own`): its position must reach the
        # target's checkpoint even when no change follows, so it travels as a MARK record on
        # the transaction topic, ordered with the transactions around it.
        self._n += 1
        tx_id = f"{self._epoch}:{self._n}"
        record = {"status": "MARK", "id": tx_id, "ts_ms": ev.ts_ms, "lsn": ev.position.lsn,
                  "index": ev.position.seq}
        self._send(self.settings.tx_topic, tx_id.encode(),
                   json.dumps(record, separators=(",", ":")).encode(), ev.position)

    def durable(self) -> Position | None:
        self._producer.poll(0)
        self._check()
        while self._pending and self._pending[0][1]:
            position, _done = self._pending.popleft()
            if position is not None:
                self._durable = position
        return self._durable

    def in_flight(self) -> int:
        return len(self._pending)

    def flush(self, timeout: float) -> bool:
        """Wait until Kafka acknowledged everything published; False on timeout."""
        left = self._producer.flush(timeout)
        self.durable()
        return left == 0 and not self._pending

    def _check(self) -> None:
        if self._error:
            raise KafkaTransportError(self._error)

    def close(self) -> None:
        self._producer.flush(10)


__all__ = ["KafkaCapture"]
