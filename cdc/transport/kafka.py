"""The Kafka transport: capture side (source -> Kafka) and apply side (Kafka -> sink).

Topics follow Debezium: one per source table, ``<prefix>.<schema>.<table>``, keyed by the
primary key as JSON (so one row's changes stay in order), values in the Debezium envelope;
``<prefix>.transaction`` carries BEGIN/END records of every source transaction (Debezium's
transaction metadata), and each data value a ``transaction`` block (id, total_order,
data_collection_order). Dead letters go to ``<topic>.dlq`` with the reason in headers.

Capture (:class:`KafkaCapture`, a :class:`cdc.transport.Publisher`): an idempotent producer
with ``acks=all``; ``durable()`` is the position of the last event such that Kafka
acknowledged it *and every message before it*, so the source (slot flush LSN, SQLite
changelog id) never advances past something Kafka could still lose.

Apply (:class:`KafkaApply`, a :class:`cdc.transport.Consumer`): one consumer in a group
reads the transaction topic and every table topic, and hands over whole source transactions
in commit order with their events in source order, however the table topics interleave — so
a parent row is written before its child even when they travel in different topics.
``offsets()`` says where to resume after everything handed over so far; the apply loop
(:mod:`cdc.transport.kafka_apply`) stores it in the target database in the same transaction
as the rows and seeks there on restart, so delivery that is at-least-once becomes
exactly-once in the target.

Transaction ids are ``<epoch>:<n>``: a capture process numbers the transactions it
publishes under its own epoch (start time in ns), so a transaction re-published after a
capture crash is a new id, and one cut short by the crash (BEGIN without END when a newer
epoch begins) is dropped whole; its events are re-published and applied once. Events the
restarted capture re-publishes (the source replays from its acknowledged position) are
dropped by position per table, here within a run and by the sink's stored positions across
runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cdc.errors import CDCError, ConfigError
from cdc.events import ChangeEvent, Position

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
                             ("topic_prefix", cfg.name), ("group", f"strangler-{cfg.name}")):
            value = raw.get(key, default)
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
            value = json.dumps(env, default=_json_default, separators=(",", ":")).encode()
            # Durable only with its END record: a half-published transaction is not durable.
            self._send(self.settings.topic(ev.table), ev.key_json(), value, None)
            if ev.last:
                assert self._first is not None
                self._tx_record("END", tx_id, self._first, counts, ev.position)
                self._open = self._first = None
            self.published += 1
        self._producer.poll(0)

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


def _json_default(value: Any) -> Any:
    from cdc.events import json_default

    return json_default(value)


# -- apply side -----------------------------------------------------------------------------

def _tx_key(tx_id: str) -> tuple[int, int]:
    epoch, _, n = tx_id.partition(":")
    return int(epoch), int(n)


@dataclass(slots=True)
class _Msg:
    offset: int
    tx: tuple[int, int] | None  # data: its transaction; tx topic: the record's
    order: int = 0
    event: ChangeEvent | None = None
    status: str = ""  # BEGIN / END on the transaction topic
    count: int = 0


TP = tuple[str, int]


class KafkaApply:
    """Reads the stream's topics and hands over whole source transactions in commit order."""

    def __init__(self, settings: KafkaSettings, tables: Sequence[str], *,
                 start: dict[TP, int] | None = None, instance: str | None = None) -> None:
        from confluent_kafka import Consumer

        self.settings = settings
        self.topics = {settings.topic(t): t for t in tables}
        ensure_topics(settings, tables)
        self._start = dict(start or {})
        self._consumer = Consumer({
            "bootstrap.servers": settings.bootstrap, "group.id": settings.group,
            # Static membership: a restarted apply process takes its place at once instead
            # of waiting for the dead one's session to expire.
            "group.instance.id": instance or f"{settings.group}-apply",
            "session.timeout.ms": 10000, "heartbeat.interval.ms": 1000,
            "enable.auto.commit": False, "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            # range: every single-partition topic goes to the same member, so one process
            # sees all of a stream's topics (others in the group stand by).
            "partition.assignment.strategy": "range",
            "fetch.wait.max.ms": 20,
        })
        self._queues: dict[TP, deque[_Msg]] = {}
        self._next: dict[TP, int] = {}  # resume offset: after everything handed over/dropped
        self._paused: set[TP] = set()
        self._current: tuple[int, int] | None = None
        self._done: tuple[int, int] = (0, 0)  # the last transaction handed over
        self._end: _Msg | None = None
        self._handed: dict[TP, int] = {}
        self._seen: dict[str, Position] = {}  # per table, the last position handed over
        self._producer: Any = None
        self.dead_letters = 0
        self._consumer.subscribe([settings.tx_topic, *self.topics], on_assign=self._on_assign)

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        from confluent_kafka import OFFSET_BEGINNING

        for tp in partitions:
            key = (tp.topic, tp.partition)
            stored = self._next.get(key, self._start.get(key))
            # The target database knows where we are; Kafka's committed offset is a copy.
            tp.offset = stored if stored is not None else OFFSET_BEGINNING
            self._queues[key] = deque()
            self._next.setdefault(key, stored if stored is not None else 0)
        # Buffered messages of a partition we had before are re-read from its resume offset.
        self._current, self._end = None, None
        consumer.assign(partitions)

    # -- reading ----------------------------------------------------------------------
    def _fetch(self, timeout: float) -> int:
        msgs = self._consumer.consume(num_messages=5000, timeout=timeout)
        for msg in msgs:
            err = msg.error()
            if err is not None:
                if err.fatal():
                    raise KafkaTransportError(f"Kafka consumer failed: {err.str()}")
                continue  # transient (partition EOF, broker restarting): librdkafka retries
            key: TP = (str(msg.topic()), int(msg.partition() or 0))
            offset = int(msg.offset() or 0)
            queue = self._queues.setdefault(key, deque())
            if offset < self._next.get(key, 0) or (queue and offset <= queue[-1].offset):
                continue  # re-delivered after a seek
            parsed = self._parse(msg)
            if parsed is not None:
                queue.append(parsed)
            elif not queue:
                self._next[key] = offset + 1
            else:
                queue.append(_Msg(offset=offset, tx=(0, 0)))  # dropped when reached
            if len(queue) > PAUSE_AT and key not in self._paused:
                self._pause(key)
        return len(msgs)

    def _pause(self, key: TP) -> None:
        from confluent_kafka import TopicPartition

        self._consumer.pause([TopicPartition(*key)])
        self._paused.add(key)

    def _parse(self, msg: Any) -> _Msg | None:
        try:
            body = json.loads(msg.value())
            if msg.topic() == self.settings.tx_topic:
                return _Msg(offset=msg.offset(), tx=_tx_key(body["id"]), status=body["status"],
                            count=int(body.get("event_count") or 0))
            event = ChangeEvent.from_envelope(body, json.loads(msg.key()) if msg.key() else {})
            tx = body["transaction"]
            return _Msg(offset=msg.offset(), tx=_tx_key(tx["id"]), order=int(tx["total_order"]),
                        event=event)
        except (ValueError, KeyError, TypeError) as exc:
            self._dead_raw(msg, f"undecodable message: {exc}")
            return None

    # -- reassembly -------------------------------------------------------------------
    def _pop(self, key: TP) -> _Msg:
        item = self._queues[key].popleft()
        self._next[key] = item.offset + 1
        if key in self._paused and len(self._queues[key]) < PAUSE_AT // 2:
            from confluent_kafka import TopicPartition

            self._consumer.resume([TopicPartition(*key)])
            self._paused.discard(key)
        return item

    def _next_transaction(self) -> bool:
        """Move to the next BEGIN on the transaction topic; False if none is here yet."""
        txq = self._queues.get((self.settings.tx_topic, 0))
        while txq:
            head = txq[0]
            if head.status == "BEGIN" and head.tx is not None and head.tx > self._done:
                self._pop((self.settings.tx_topic, 0))
                self._current, self._end = head.tx, None
                return True
            self._pop((self.settings.tx_topic, 0))  # END of a finished one, or a stale record
        return False

    def _complete(self) -> list[ChangeEvent] | None:
        """The current transaction's events if all are here, else None."""
        cur = self._current
        assert cur is not None
        txq = self._queues.get((self.settings.tx_topic, 0))
        if self._end is None and txq:
            head = txq[0]
            if head.tx is not None and head.tx < cur:
                self._pop((self.settings.tx_topic, 0))  # stale record (undecodable, or older)
                return self._complete()
            if head.status == "END" and head.tx == cur:
                self._end = head
            elif head.tx is not None and head.tx[0] > cur[0]:
                # A newer capture process began while this one was open: the old process
                # died mid-transaction. Its events are re-published under the new epoch.
                self._current = None
                return []
        available: list[tuple[TP, int]] = []
        for key, queue in self._queues.items():
            if key[0] == self.settings.tx_topic:
                continue
            while queue and queue[0].tx is not None and queue[0].tx < cur:
                self._pop(key)  # a dead transaction's events, or an undecodable one
            n = 0
            for item in queue:
                if item.tx != cur:
                    break
                n += 1
            if n:
                available.append((key, n))
        if self._end is None or sum(n for _, n in available) < self._end.count:
            return None
        items = [self._pop(key) for key, n in available for _ in range(n)]
        self._pop((self.settings.tx_topic, 0))  # the END
        items.sort(key=lambda m: m.order)
        events = []
        for m in items:
            ev = m.event
            if ev is None:
                continue
            if ev.position[0]:  # initial-copy events (LSN 0) are never duplicates
                seen = self._seen.get(ev.table)
                if seen is not None and ev.position <= seen:
                    continue  # re-published after a capture restart: handed over already
                self._seen[ev.table] = ev.position
            events.append(ev)
        if events:
            events[-1].last = True
        self._done, self._current, self._end = cur, None, None
        return events

    def _step(self) -> list[ChangeEvent] | None:
        """One whole transaction ([] for a dropped one), or None if more data is needed."""
        if self._current is None and not self._next_transaction():
            return None
        return self._complete()

    def consume(self, max_events: int, timeout: float = 0.0) -> list[ChangeEvent]:
        """Whole source transactions in commit order (at least one, if any is complete)."""
        out: list[ChangeEvent] = []
        deadline = time.monotonic() + timeout
        while len(out) < max_events:
            events = self._step()
            if events is not None:
                out.extend(events)
                continue
            wait = 0.0 if out else max(0.0, deadline - time.monotonic())
            if not self._fetch(min(wait, 0.1)) and (out or wait <= 0):
                break
        self._handed = dict(self._next)
        return out

    def offsets(self) -> dict[TP, int]:
        """Where to resume after everything handed over by the last ``consume``."""
        return dict(self._handed)

    def commit(self, position: Position) -> None:
        """The sink made the handed-over events durable: mirror the offsets into Kafka."""
        from confluent_kafka import KafkaException, TopicPartition

        tps = [TopicPartition(t, p, o) for (t, p), o in self._handed.items()]
        if tps:
            # Informational only: the target database holds the real offsets.
            with contextlib.suppress(KafkaException):
                self._consumer.commit(offsets=tps, asynchronous=True)

    # -- dead letters -----------------------------------------------------------------
    def _dlq_producer(self) -> Any:
        if self._producer is None:
            from confluent_kafka import Producer

            self._producer = Producer({"bootstrap.servers": self.settings.bootstrap,
                                       "enable.idempotence": True, "acks": "all"})
        return self._producer

    def dead_letter(self, event: ChangeEvent, reason: str) -> None:
        """Publish an event the sink could not apply to ``<topic>.dlq``, reason in headers."""
        topic = self.settings.topic(event.table)
        self._dlq_producer().produce(
            f"{topic}.dlq", key=event.key_json(), value=event.to_json(),
            headers=[("strangler.reason", reason.encode()), ("strangler.stream", self.settings.stream.encode()),
                     ("strangler.source.topic", topic.encode()),
                     ("strangler.position", str(event.position).encode())])
        self.dead_letters += 1

    def _dead_raw(self, msg: Any, reason: str) -> None:
        self._dlq_producer().produce(
            f"{msg.topic()}.dlq", key=msg.key(), value=msg.value(),
            headers=[("strangler.reason", reason.encode()), ("strangler.stream", self.settings.stream.encode()),
                     ("strangler.source.topic", msg.topic().encode()),
                     ("strangler.source.offset", str(msg.offset()).encode())])
        self.dead_letters += 1

    def close(self) -> None:
        if self._producer is not None:
            self._producer.flush(10)
            self._producer = None
        with contextlib.suppress(RuntimeError):  # already closed
            self._consumer.close()


__all__ = ["KafkaApply", "KafkaCapture", "KafkaSettings", "KafkaTransportError", "ensure_topics"]
