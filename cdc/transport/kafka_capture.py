"""The Kafka transport's capture end: source events -> the stream's topics.

Each row change goes to its table's topic, keyed by the primary key as JSON (so one row's
changes stay in order), the value in the Debezium envelope. Two headers, invisible to a
JSON consumer, carry its place: ``strangler.tx`` (the transaction id) and
``strangler.order`` (its index in the transaction, across tables).

The control topic, ``__strangler-control.<prefix>``, is ours: a BEGIN and an END record per
source transaction (END says how many events each table's topic got, and the position it
makes durable), MARK records for positions with no change (a drain marker: a logical
message in a transaction of its own), EVENT records for the row-less snapshot markers
(start/range/last) and RELATION records for a change of a table's columns the stream
accepted (``new_columns``), each in its place in the transaction. No control record ever
reaches a data topic. Each table's schema also goes to the compacted schema topic. With ``transaction_metadata: true`` the BEGIN/END records also go, in Debezium's
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

import importlib.metadata
import json
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cdc.events import ChangeEvent, Position, json_default
from cdc.mapping import TableSchema
from cdc.transport.kafka_schemas import envelope_schema, key_schema, wrapper
from cdc.transport.kafka_topics import KafkaSettings, KafkaTransportError, ensure_topics
from cdc.transport.kafka_values import Codec, convert, encoders, placeholders

TX_HEADER, ORDER_HEADER = "strangler.tx", "strangler.order"
UNAVAILABLE = "__debezium_unavailable_value"  # Debezium's unavailable.value.placeholder


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
        self._encoders: dict[str, dict[str, Codec]] = {}  # per table, per column (describe)
        self._placeholders: dict[str, dict[str, Any]] = {}
        self._wrappers: dict[str, tuple[Callable[[bytes], bytes], Callable[[bytes], bytes]]] = {}
        self._pending: deque[list[Any]] = deque()  # [position | None, delivered] per message
        self._durable: Position | None = None
        self._error: str | None = None
        self.published = 0

    def _send(self, topic: str, key: bytes | None, value: bytes | None, position: Position | None,
              headers: list[tuple[str, str | bytes | None]] | None = None) -> None:
        entry = [position, False]
        self._pending.append(entry)

        def delivered(err: Any, _msg: Any, entry: list[Any] = entry) -> None:
            if err is not None:
                self._error = f"Kafka did not take a message for {topic}: {err}"
            else:
                entry[1] = True

        while True:
            try:
                self._producer.produce(topic, key=key, value=value, headers=headers, on_delivery=delivered)
                return
            except BufferError:  # the local queue is full: wait for the broker (backpressure)
                self._producer.poll(0.1)
                self._check()

    def _control(self, record: dict[str, Any], position: Position | None = None) -> None:
        """A record on the control topic, where the apply end takes the order of things from."""
        self._send(self.settings.control_topic, str(record.get("id", "")).encode(),
                   json.dumps(record, default=json_default, separators=(",", ":")).encode(), position)

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
            self._send(self.settings.tx_topic, tx.id.encode(),
                       json.dumps(debezium, separators=(",", ":")).encode(), None)
        if position is not None:
            record["lsn"], record["index"] = position.lsn, position.seq
        self._control(record, position)

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
            if ev.after is None and ev.op == "r":
                # a row-less snapshot marker (start/range/last) is for our sink only: it travels
                # on the control topic, in its place in the transaction, never on a data topic
                self._control({"status": "EVENT", "id": tx.id, "order": tx.order,
                               "key": ev.key, "event": ev.to_envelope()})
            else:
                n = tx.counts[ev.table] = tx.counts.get(ev.table, 0) + 1
                env = self._envelope(ev)
                env["transaction"] = ({"id": tx.id, "total_order": tx.order, "data_collection_order": n}
                                      if self.settings.transaction_metadata else None)
                value = json.dumps(env, default=json_default, separators=(",", ":")).encode()
                # the apply end orders by these headers; Debezium consumers never see them
                headers: list[tuple[str, str | bytes | None]] = [
                    (TX_HEADER, tx.id.encode()), (ORDER_HEADER, b"%d" % tx.order)]
                # Durable only with its END record: a half-published transaction is not durable.
                topic = self.settings.topic(ev.table)
                key = None if ev.op == "t" else self._key(ev)  # a TRUNCATE has no row, so no key
                if ev.table in self._wrappers:  # schemas_enable: {"schema", "payload"}
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

    def _envelope(self, ev: ChangeEvent) -> dict[str, Any]:
        """Debezium's envelope: its ``source`` fields (connector, name, version, sequence,
        ts_us/ts_ns, xmin) besides ours (index, last, unchanged), its placeholder for unchanged
        TOASTed values, and the time of publishing as the top-level ``ts_ms``
        (``source.ts_ms`` is the source's commit time)."""
        env = ev.to_envelope()
        codecs = self._encoders.get(ev.table)
        if codecs:
            env["before"], env["after"] = convert(ev.before, codecs), convert(ev.after, codecs)
        if ev.unchanged and env["after"] is not None:
            # an unchanged TOASTed value: Debezium's placeholder where the column would be (the
            # apply end drops the columns `source.unchanged` names, never by comparing values)
            shown = self._placeholders.get(ev.table, {})
            env["after"] = {**env["after"], **{c: shown.get(c, UNAVAILABLE) for c in ev.unchanged}}
        src = env["source"]
        src.update(version=self._version, connector=self._connector, name=self.settings.topic_prefix,
                   sequence=json.dumps([None, str(ev.position.lsn)]), ts_us=ev.ts_ms * 1000,
                   ts_ns=ev.ts_ms * 1_000_000, xmin=None)
        now_us = time.time_ns() // 1000
        env["ts_ms"], env["ts_us"], env["ts_ns"] = now_us // 1000, now_us, now_us * 1000
        return env

    def _key(self, ev: ChangeEvent) -> bytes:
        codecs = self._encoders.get(ev.table)
        key = convert(ev.key, codecs) if codecs else ev.key
        return json.dumps(key, default=json_default, sort_keys=True, separators=(",", ":")).encode()

    def describe(self, schemas: Mapping[str, TableSchema], *, changed: bool = False) -> None:
        """Each table's schema to the compacted schema topic (the apply end compiles its mapping
        from it); with `changed`, also a RELATION record in its place among the events, so the
        apply end's mapping changes exactly where the capture's did."""
        for table, schema in schemas.items():
            self.schemas[table] = schema
            self._encoders[table] = encoders(schema, self.settings.modes)
            self._placeholders[table] = placeholders(schema, self.settings.modes)
            if self.settings.schemas_enable:
                topic, modes = self.settings.topic(table), self.settings.modes
                self._wrappers[table] = (wrapper(key_schema(schema, topic, modes)),
                                         wrapper(envelope_schema(schema, topic, modes, self._connector)))
            body = json.dumps(schema.to_json(), separators=(",", ":")).encode()
            self._send(self.settings.schema_topic, table.encode(), body, None)
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


__all__ = ["ORDER_HEADER", "TX_HEADER", "UNAVAILABLE", "KafkaCapture"]
