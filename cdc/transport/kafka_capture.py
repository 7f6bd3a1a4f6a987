"""The Kafka transport's capture end: source events -> the stream's topics.

Each row change goes to its table's topic, keyed by the primary key as JSON (so one row's
changes stay in order), the value in the Debezium envelope. Two headers, invisible to a
JSON consumer, carry its place: ``strangler.tx`` (the transaction id) and
``strangler.order`` (its index in the transaction, across tables).

The control topic, ``__strangler-control.<prefix>``, is ours: a BEGIN and an END record per
source transaction (END says how many events each table's topic got, and the position it
makes durable), MARK records for positions with no change (a drain marker: a logical
message in a transaction of its own), EVENT records for the row-less snapshot markers
(start/range/last), RELATION records for a change of a table's columns the stream
accepted (``new_columns``), each in its place in the transaction, and a RESET record where
the capture started over from a new capture point (``start_over``). No control record ever
reaches a data topic. Where the capture end itself left off goes to the compacted
progress topic (:mod:`cdc.transport.kafka_progress`), so it never opens the target. Each table's schema also goes to the compacted schema topic. With ``transaction_metadata: true`` the BEGIN/END records also go, in Debezium's
shape, to ``<prefix>.transaction``, and each data value gets Debezium's ``transaction`` block.
With ``schemas_enable: true`` each data key and value is ``{"schema", "payload"}``, as Kafka's
JsonConverter writes them with schemas on (cdc/transport/kafka_schemas.py).

An idempotent producer with ``acks=all``; ``durable()`` is the position of the last event
such that Kafka acknowledged it *and every message before it*, so the source (slot flush
LSN, SQLite changelog id) never advances past something Kafka could still lose.

Transaction ids are ``<epoch>:<n>``: a capture process numbers the transactions it
publishes under its own epoch (start time in ns), so a transaction re-published after a
capture crash is a new id, and the apply end can tell one cut short by the crash (BEGIN
without END when a newer epoch begins) from one that is only late.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cdc.events import ChangeEvent, Position, copy_progress
from cdc.mapping import TableSchema
from cdc.transport import CopyState, Progress, kafka_progress
from cdc.transport.kafka_envelope import UNAVAILABLE, Envelopes, json_bytes
from cdc.transport.kafka_schemas import envelope_schema, key_schema, wrapper
from cdc.transport.kafka_topics import KafkaSettings, KafkaTransportError, ensure_topics

TX_HEADER, ORDER_HEADER = "strangler.tx", "strangler.order"


def _version() -> str:
    try:
        return importlib.metadata.version("strangler")
    except importlib.metadata.PackageNotFoundError:
        return "dev"


@dataclass
class _Tx:
    """The source transaction being published."""

    id: str
    first: ChangeEvent
    order: int = 0  # events so far
    counts: dict[str, int] = field(default_factory=dict)  # data events per table
    copies: dict[str, CopyState] = field(default_factory=dict)  # copy progress its events make
    header: bytes = b""  # the id as the TX_HEADER value

    def __post_init__(self) -> None:
        self.header = self.id.encode()


class _Segment:
    """Messages sent in a row, up to and with the next one that makes a position durable:
    all of them acknowledged when `left` is 0. One delivery callback for them all."""

    __slots__ = ("copies", "left", "on_delivery", "position", "sent")

    def __init__(self, on_delivery: Callable[[Any, Any], None]) -> None:
        self.position: Position | None = None  # set when the segment is closed
        self.copies: dict[str, CopyState] | None = None  # copy progress it completes
        self.left = self.sent = 0
        self.on_delivery = on_delivery


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
            "reconnect.backoff.max.ms": 2000,  # back within seconds of a broker restart (default 10 s)
        })
        self._connector = "sqlite" if settings.default_schema == "main" else "postgresql"
        self._version = f"strangler-{_version()}"
        self._epoch = time.time_ns()
        self._n = 0  # transactions started under this epoch
        self._open: _Tx | None = None
        self.schemas: dict[str, TableSchema] = {}  # as last described
        self._envelopes: dict[str, Envelopes] = {}  # per table (describe)
        self._topics: dict[str, str] = {}  # per table
        self._wrappers: dict[str, tuple[Callable[[bytes], bytes], Callable[[bytes], bytes]]] = {}
        self._pending: deque[_Segment] = deque()  # oldest first; the last one may be open
        self._open_segment: _Segment | None = None
        self._log: kafka_progress.ProgressLog | None = None  # loaded by progress()
        self._copies: dict[str, CopyState] = {}  # copy progress as published (not yet durable)
        self._durable: Position | None = None
        self._error: str | None = None
        self.published = 0

    def _segment(self) -> _Segment:
        def delivered(err: Any, msg: Any) -> None:
            if err is not None:
                self._error = f"Kafka did not take a message for {msg.topic()}: {err}"
            else:
                seg.left -= 1

        seg = self._open_segment = _Segment(delivered)
        self._pending.append(seg)
        return seg

    def _send(self, topic: str, key: bytes | None, value: bytes | None, position: Position | None,
              headers: list[tuple[str, str | bytes | None]] | None = None,
              copies: dict[str, CopyState] | None = None) -> None:
        seg = self._open_segment or self._segment()
        seg.left += 1
        seg.sent += 1
        while True:
            try:
                self._producer.produce(topic, value, key, headers=headers, on_delivery=seg.on_delivery)
                break
            except BufferError:  # the local queue is full: wait for the broker (backpressure)
                self._producer.poll(0.1)
                self._check()
        if copies:
            seg.copies = copies
        if position is not None:
            seg.position = position
            self._open_segment = None

    def _control(self, record: dict[str, Any], position: Position | None = None,
                 copies: dict[str, CopyState] | None = None) -> None:
        """A record on the control topic, where the apply end takes the order of things from."""
        self._send(self.settings.control_topic, str(record.get("id", "")).encode(), json_bytes(record), position,
                   copies=copies)

    def _boundary(self, status: str, tx: _Tx, position: Position | None) -> None:
        """BEGIN or END of a source transaction: on the control topic (ours, with the position
        an END makes durable), and in Debezium's shape on ``<prefix>.transaction`` if asked."""
        first = tx.first
        record: dict[str, Any] = {"status": status, "id": tx.id, "ts_ms": first.ts_ms,
                                  "source_tx_id": first.tx_id}
        if status == "END":
            record["event_count"] = sum(tx.counts.values())
            record["data_collections"] = [{"data_collection": self.settings.collection(t), "event_count": n}
                                          for t, n in tx.counts.items()]
        if self.settings.transaction_metadata:
            debezium = {k: v for k, v in record.items() if k != "source_tx_id"}
            debezium.setdefault("event_count", None)
            debezium.setdefault("data_collections", None)
            self._send(self.settings.tx_topic, tx.header, json_bytes(debezium), None)
        if position is not None:
            record["lsn"], record["index"] = position.lsn, position.seq
        # the copy progress of the transaction holds once this END (and all before) is in Kafka
        self._control(record, position, (tx.copies or None) if status == "END" else None)

    def publish(self, events: Sequence[ChangeEvent]) -> None:
        self._check()
        for ev in events:
            if ev.op == "m":  # a message carries nothing downstream: durable behind the rest
                self._message(ev)
                continue
            tx = self._open
            if tx is None:
                self._n += 1
                tx = self._open = _Tx(f"{self._epoch}:{self._n}", ev)
                self._boundary("BEGIN", tx, None)
            tx.order += 1
            if ev.op == "r" and ev.snapshot != "false":
                table = ev.table
                prev = self._copies.get(table) or (self._log.progress.copies.get(table) if self._log else None)
                tx.copies[table] = self._copies[table] = copy_progress(prev, ev, tuple(ev.key))
            if ev.after is None and ev.op == "r":
                # a row-less snapshot marker (start/range/last) is for our sink only: it travels
                # on the control topic, in its place in the transaction, never on a data topic
                self._control({"status": "EVENT", "id": tx.id, "order": tx.order,
                               "key": ev.key, "event": ev.to_envelope()})
            else:
                n = tx.counts[ev.table] = tx.counts.get(ev.table, 0) + 1
                envelopes = self._envelopes.get(ev.table) or self._table(ev.table, None)
                value = envelopes.value(ev, {"id": tx.id, "total_order": tx.order, "data_collection_order": n}
                                        if self.settings.transaction_metadata else None)
                # the apply end orders by these headers; Debezium consumers never see them
                headers: list[tuple[str, str | bytes | None]] = [
                    (TX_HEADER, tx.header), (ORDER_HEADER, b"%d" % tx.order)]
                # Durable only with its END record: a half-published transaction is not durable.
                topic = self._topics[ev.table]
                key = None if ev.op == "t" else envelopes.key(ev)  # a TRUNCATE has no row, so no key
                if self._wrappers and ev.table in self._wrappers:  # schemas_enable: {"schema", "payload"}
                    wrap_key, wrap_value = self._wrappers[ev.table]
                    key, value = key and wrap_key(key), wrap_value(value)
                self._send(topic, key, value, None, headers)
                if ev.op == "d" and self.settings.tombstones_on_delete:
                    self._send(topic, key, None, None)  # Debezium's tombstone: compaction drops the key
            if ev.last:
                self._boundary("END", tx, ev.position)
                self._open = None
            self.published += 1
        self._producer.poll(0)

    def _table(self, table: str, schema: TableSchema | None) -> Envelopes:
        """How `table`'s messages are made (as described; an undescribed table's values as
        they are)."""
        envelopes = self._envelopes[table] = Envelopes(
            schema, self.settings.modes, connector=self._connector, version=self._version,
            name=self.settings.topic_prefix)
        self._topics[table] = self.settings.topic(table)
        return envelopes

    def describe(self, schemas: Mapping[str, TableSchema], *, changed: bool = False) -> None:
        """Each table's schema to the compacted schema topic (the apply end compiles its mapping
        from it); with `changed`, also a RELATION record in its place among the events, so the
        apply end's mapping changes exactly where the capture's did."""
        for table, schema in schemas.items():
            self.schemas[table] = schema
            self._table(table, schema)
            if self.settings.schemas_enable:
                topic, modes = self.settings.topic(table), self.settings.modes
                self._wrappers[table] = (wrapper(key_schema(schema, topic, modes)),
                                         wrapper(envelope_schema(schema, topic, modes, self._connector)))
            self._send(self.settings.schema_topic, table.encode(), json_bytes(schema.to_json()), None)
            if not changed:
                continue
            record: dict[str, Any] = {"status": "RELATION", "table": table, "columns": schema.columns}
            if self._open is not None:  # inside a transaction: it takes a place in its order
                self._open.order += 1
                record.update(id=self._open.id, order=self._open.order)
            else:
                self._n += 1
                record.update(id=f"{self._epoch}:{self._n}", order=0)
            self._control(record)
        self._producer.poll(0)

    def _message(self, ev: ChangeEvent) -> None:
        if not ev.last:
            return
        if self._open is not None:  # it ends a transaction
            self._boundary("END", self._open, ev.position)
            self._open = None
            return
        # A message alone (a drain marker, `strangler own`): its position must reach the
        # target's checkpoint even when no change follows, so it travels as a MARK record on
        # the control topic, ordered with the transactions around it.
        self._n += 1
        self._control({"status": "MARK", "id": f"{self._epoch}:{self._n}", "ts_ms": ev.ts_ms,
                       "lsn": ev.position.lsn, "index": ev.position.seq}, ev.position)

    def durable(self) -> Position | None:
        self._producer.poll(0)
        self._check()
        pending = self._pending
        advanced = False
        while pending and not pending[0].left:
            seg = pending.popleft()
            if seg.copies and self._log is not None:  # all up to this END is in Kafka: so is this
                self._log.copied(seg.copies)
            if seg.position is not None:
                self._durable, advanced = seg.position, True
            if seg is self._open_segment:  # all its messages so far: the next ones start another
                self._open_segment = None
        if advanced and self._log is not None and self._durable is not None and self._durable.lsn:
            self._log.advanced(self._durable)
        return self._durable

    def progress(self) -> Progress:
        """Where this stream's capture left off, read from the progress topic when first
        asked, then kept up to date as what is published becomes durable (from then on:
        a capture whose progress nobody asks for records none)."""
        return self._progress_log().progress

    def _progress_log(self) -> kafka_progress.ProgressLog:
        if self._log is None:
            self._log = kafka_progress.ProgressLog(
                self.settings, lambda topic, key, value: self._send(topic, key, value, None),
                kafka_progress.load(self.settings))
        return self._log

    def start_over(self) -> None:
        """A new capture point: a RESET record tells the apply end, in its place, that the
        target's checkpoints from before are void; this end forgets its own progress. Both
        are in Kafka when this returns."""
        self._n += 1
        self._control({"status": "RESET", "id": f"{self._epoch}:{self._n}"})
        self._progress_log().forget(self.schemas)
        self._copies.clear()
        if not self.flush(30):
            raise KafkaTransportError(f"Kafka at {self.settings.bootstrap} did not acknowledge the start of "
                                      f"a new capture point of stream {self.settings.stream} within 30 s")

    def in_flight(self) -> int:
        """Messages sent and not yet made durable (acknowledged, and every one before them)."""
        return sum(seg.sent for seg in self._pending)

    def flush(self, timeout: float) -> bool:
        """Wait until Kafka acknowledged everything published; False on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            left = self._producer.flush(max(0.0, deadline - time.monotonic()))
            self.durable()  # may send progress records: flushed by the next round
            if left == 0 and not self._pending:
                return True
            if left or time.monotonic() >= deadline:
                return False

    def _check(self) -> None:
        if self._error:
            raise KafkaTransportError(self._error)

    def close(self) -> None:
        self._producer.flush(10)
        if self._log is not None and self._durable is not None and self._durable.lsn:
            with contextlib.suppress(KafkaTransportError):
                self.durable()
                self._log.advanced(self._durable, now=True)  # where the next run resumes
                self._producer.flush(10)


__all__ = ["ORDER_HEADER", "TX_HEADER", "UNAVAILABLE", "KafkaCapture"]
