"""The Kafka transport: capture side (source -> Kafka) and apply side (Kafka -> sink).

Topics follow Debezium: one per source table, ``<prefix>.<schema>.<table>``, keyed by the
primary key as JSON (so one row's changes stay in order), values in the Debezium envelope;
``<prefix>.transaction`` carries BEGIN/END records of every source transaction (Debezium's
transaction metadata), and MARK records for positions with no change (a drain marker:
a logical message in a transaction of its own), and each data value a ``transaction``
block (id, total_order, data_collection_order). Dead letters go to ``<topic>.dlq`` with the reason in headers.

Capture (:class:`KafkaCapture`, a :class:`cdc.transport.Publisher`): an idempotent producer
with ``acks=all``; ``durable()`` is the position of the last event such that Kafka
acknowledged it *and every message before it*, so the source (slot flush LSN, SQLite
changelog id) never advances past something Kafka could still lose.

Apply (:class:`cdc.transport.kafka_apply.KafkaApply`, a :class:`cdc.transport.Consumer`)
hands over source transactions in commit order with their events in source order, however
the table topics interleave; its resume offsets are stored in the target database in the
same transaction as the rows (:mod:`cdc.transport.kafka_run`), so delivery that is
at-least-once becomes exactly-once in the target.

Transaction ids are ``<epoch>:<n>``: a capture process numbers the transactions it
publishes under its own epoch (start time in ns), so a transaction re-published after a
capture crash is a new id, and one cut short by the crash (BEGIN without END when a newer
epoch begins) is dropped whole; its events are re-published and applied once. Events the
restarted capture re-publishes (the source replays from its acknowledged position) are
dropped by position per table, here within a run and by the sink's stored positions across
runs.
"""

from __future__ import annotations

import json
import os
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cdc.errors import CDCError, ConfigError
from cdc.events import ChangeEvent, Position, json_default

ENV_BOOTSTRAP = "STRANGLER_KAFKA_BOOTSTRAP"
DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
TX_SUFFIX = "transaction"
PAUSE_AT = 50_000  # buffered messages per partition before it is paused (memory bound)


class KafkaTransportError(CDCError):
    """Kafka refused or lost something; the process stops and resumes from its checkpoints."""


@dataclass(frozen=True, kw_only=True)
class KafkaSettings:
    """The ``transport:`` block of a stream in streams.yaml for ``kind: kafka``."""

    stream: str
    bootstrap: str
    topic_prefix: str
    group: str
    default_schema: str = "public"
    linger_ms: int = 5

    @classmethod
    def from_stream(cls, cfg: Any) -> KafkaSettings:
        """From a :class:`cdc.config.StreamConfig` (``transport: kafka`` or a mapping)."""
        raw = dict(cfg.transport)
        path = f"streams.{cfg.name}.transport"
        allowed = {"kind", "bootstrap", "topic_prefix", "group", "linger_ms"}
        for key in raw:
            if key not in allowed:
                raise ConfigError(f"{path}.{key}", f"unknown key; allowed: {', '.join(sorted(allowed))}")
        if raw.get("kind") != "kafka":
            raise ConfigError(f"{path}.kind", f"is {raw.get('kind')!r}, not kafka")
        values: dict[str, str] = {}
        for key, default in (("bootstrap", os.environ.get(ENV_BOOTSTRAP) or DEFAULT_BOOTSTRAP),
                             ("topic_prefix", cfg.name), ("group", "")):
            # the group follows the topics: one group per set of topics, unless told
            value = raw.get(key, default or f"strangler-{values.get('topic_prefix', cfg.name)}")
            if not isinstance(value, str) or not value.strip():
                raise ConfigError(f"{path}.{key}", f"must be a non-empty string, not {value!r}")
            values[key] = value.strip()
        if not all(c.isalnum() or c in "._-" for c in values["topic_prefix"]):
            raise ConfigError(f"{path}.topic_prefix", "may hold only letters, digits, '.', '_', '-'")
        linger = raw.get("linger_ms", 5)
        if not isinstance(linger, int) or isinstance(linger, bool) or not 0 <= linger <= 1000:
            raise ConfigError(f"{path}.linger_ms", f"must be an integer in 0..1000, not {linger!r}")
        return cls(stream=cfg.name, bootstrap=values["bootstrap"], topic_prefix=values["topic_prefix"],
                   group=values["group"], linger_ms=linger,
                   default_schema="main" if cfg.source_kind == "sqlite" else "public")

    def collection(self, table: str) -> str:
        """Debezium's data collection name, ``<schema>.<table>``."""
        ns, _, name = table.rpartition(".")
        return f"{ns or self.default_schema}.{name}"

    def topic(self, table: str) -> str:
        """``<prefix>.<schema>.<table>`` for a source table (``ns.name`` or ``name``)."""
        return f"{self.topic_prefix}.{self.collection(table)}"

    @property
    def tx_topic(self) -> str:
        return f"{self.topic_prefix}.{TX_SUFFIX}"


def ensure_topics(settings: KafkaSettings, tables: Sequence[str]) -> None:
    """Create the stream's topics (one partition each) if missing; consumers need them first."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    names = [settings.tx_topic] + [settings.topic(t) for t in tables]
    names += [f"{settings.topic(t)}.dlq" for t in tables]
    admin = AdminClient({"bootstrap.servers": settings.bootstrap})
    futures = admin.create_topics([NewTopic(n, num_partitions=1, replication_factor=1) for n in names],
                                  operation_timeout=30, request_timeout=30)
    for name, fut in futures.items():
        try:
            fut.result(timeout=60)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise KafkaTransportError(f"cannot create Kafka topic {name} at "
                                          f"{settings.bootstrap}: {exc.args[0].str()}") from exc


# -- capture side ---------------------------------------------------------------------------

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

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until Kafka acknowledged everything published; False on timeout."""
        left = self._producer.flush(timeout)
        self.durable()
        return left == 0 and not self._pending

    def _check(self) -> None:
        if self._error:
            raise KafkaTransportError(self._error)

    # The capture side applies nothing: these make it a whole Transport for the pipeline.
    def consume(self, max_events: int, timeout: float = 0.0) -> list[ChangeEvent]:
        time.sleep(timeout)  # nothing ever arrives here; don't let a caller spin
        return []

    def commit(self, position: Position) -> None:
        return None

    def close(self) -> None:
        self._producer.flush(10)


__all__ = ["KafkaCapture", "KafkaSettings", "KafkaTransportError", "ensure_topics"]
