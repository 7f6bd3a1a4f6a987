"""The Kafka transport's apply end: the stream's topics -> source transactions, in order.

One consumer, its partitions assigned by hand (one per topic: ``<prefix>.transaction`` and
every table topic), reading from the offsets in the resume token the target database
holds. Which process may read is decided by the stream's lease in the target
(:mod:`cdc.lease`), not by a consumer group, so no rebalance can cut a transaction.

Transactions are taken in the order of their BEGIN records, and each one's events in
``total_order`` from whichever table topic holds the next one, so a parent row is written
before its child even when they travel in different topics. A large transaction streams
through in parts: ``batch.boundary`` tells the applier when the sink may commit, and
``batch.resume`` what to store with the rows so a restart resumes exactly there.

A transaction cut short by a capture crash (a newer epoch's BEGIN arrives before its last
event) is skipped — the restarted capture re-publishes it — and if part of it was handed
over already, ``batch.restart`` asks the applier to roll back and ``reopen`` re-reads from
the last commit. Events re-published after a capture restart are dropped by position per
table. A RESET record (the capture started over from a new capture point) starts a batch
with ``batch.reset``, and positions from before it no longer drop anything.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from cdc.events import ChangeEvent, Position
from cdc.mapping import TableSchema
from cdc.transport import Batch, Resume
from cdc.transport.kafka_capture import ORDER_HEADER, TX_HEADER
from cdc.transport.kafka_schemas import unwrap
from cdc.transport.kafka_topics import KafkaSettings, KafkaTransportError, ensure_topics
from cdc.transport.kafka_values import decode_row, decoders

PAUSE_AT = 50_000  # buffered messages per partition before it is paused (memory bound)
# Parsed messages wait in those buffers past many young collections, each of which scanned
# them again: an eighth of the apply half's CPU (benchmarks/README.md). A process applying
# from Kafka collects once this many more objects are alive (about 20,000 messages' worth).
GC_YOUNG = 200_000


def _tx_key(tx_id: str) -> tuple[int, int]:
    epoch, _, n = tx_id.partition(":")
    return int(epoch), int(n)


class _Source(msgspec.Struct, gc=False):  # never in a cycle: the collector need not track it
    """The envelope's ``source`` fields the apply end reads (the others are skipped unparsed)."""

    table: str
    lsn: int
    index: int = 0
    ts_ms: int | None = None
    last: bool = True
    db: str = ""
    schema: str = ""
    txId: int | None = None  # noqa: N815 - Debezium's name
    snapshot: str = "false"
    unchanged: list[str] | None = None
    extent: Any = None


class _Envelope(msgspec.Struct, gc=False):  # holds only its source and two rows of JSON values
    op: str
    source: _Source
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    ts_ms: int | None = None


_ENVELOPE = msgspec.json.Decoder(_Envelope)
_JSON = msgspec.json.Decoder()


def _event(value: bytes, key: bytes | None) -> ChangeEvent:
    """A data message as its event: what ``ChangeEvent.from_envelope(json.loads(value),
    json.loads(key))`` gives, about four times faster where the fields have their usual
    types (msgspec skips what is not read); anything else — NaN, a lone surrogate, a
    string LSN — takes that general path, which accepts or refuses it as before."""
    try:
        env = _ENVELOPE.decode(value)
        row_key = _JSON.decode(key) if key else {}
    except msgspec.DecodeError:  # also {"schema", "payload"} documents (schemas_enable)
        return ChangeEvent.from_envelope(unwrap(json.loads(value)), unwrap(json.loads(key)) if key else {})
    src = env.source
    # positional, in ChangeEvent's field order: a third faster than by keyword, once per row
    return ChangeEvent(env.op, src.table, row_key, env.before, env.after, Position(src.lsn, src.index),
                       src.ts_ms or env.ts_ms or 0, src.last, src.db, src.schema, src.txId, src.snapshot,
                       tuple(src.unchanged or ()), src.extent)


@dataclass(slots=True)
class _Msg:
    offset: int
    tx: tuple[int, int] | None  # data: its transaction; tx topic: the record's
    order: int = 0
    event: ChangeEvent | None = None
    status: str = ""  # BEGIN / END / MARK / EVENT / RELATION / RESET on the control topic
    counts: dict[str, int] | None = None  # END: the transaction's events per data topic
    relation: tuple[str, dict[str, str]] | None = None  # RELATION: (table, columns)


TP = tuple[str, int]


@dataclass(frozen=True)
class Cursor:
    """Where reading resumes after a whole transaction; what the resume token holds.

    offsets  the next offset to read per partition
    done     the last transaction handed over whole (records of it or before are stale)
    seen     per table, the last position handed over (a restarted capture re-publishes
             what its source replays; those events are dropped by position)
    """

    offsets: dict[TP, int] = field(default_factory=dict)
    done: tuple[int, int] = (0, 0)
    seen: dict[str, Position] = field(default_factory=dict)

    def token(self) -> dict[str, Any]:
        return {"kafka": {"offsets": {f"{t}:{p}": o for (t, p), o in self.offsets.items()},
                          "done": f"{self.done[0]}:{self.done[1]}",
                          "seen": {t: [p.lsn, p.seq] for t, p in self.seen.items()}}}

    @classmethod
    def from_token(cls, token: Resume | None) -> Cursor:
        body = (token or {}).get("kafka")
        if not body:
            return cls()
        offsets: dict[TP, int] = {}
        for name, offset in body.get("offsets", {}).items():
            topic, _, part = str(name).rpartition(":")
            offsets[(topic, int(part))] = int(offset)
        seen = {str(t): Position(int(p[0]), int(p[1])) for t, p in body.get("seen", {}).items()}
        return cls(offsets=offsets, done=_tx_key(str(body.get("done", "0:0"))), seen=seen)


@dataclass
class _Open:
    """The source transaction being handed over."""

    tx: tuple[int, int]
    order: int = 0  # its events handed over (or dropped as duplicates) so far
    popped: dict[str, int] = field(default_factory=dict)  # of them, per data topic
    counts: dict[str, int] | None = None  # from its END record, once read: events per topic


class KafkaApply:
    """Reads the stream's topics and hands over whole source transactions in commit order.

    Partitions are assigned by hand — no consumer-group rebalance can move them under a
    transaction — and positions come only from the resume token the target holds. All the
    reading state derives from a :class:`Cursor` in :meth:`_read_from`, and is rebuilt
    there whole when the sink rolls back; between boundaries it only moves forward.
    """

    def __init__(self, settings: KafkaSettings, tables: Sequence[str], *,
                 resume: Resume | None = None, schemas: Mapping[str, TableSchema] | None = None) -> None:
        from confluent_kafka import Consumer

        self.settings = settings
        self.topics = {settings.topic(t): t for t in tables}
        ensure_topics(settings, tables)
        self._tx_tp: TP = (settings.control_topic, 0)
        self._partitions: list[TP] = [self._tx_tp, *((t, 0) for t in self.topics)]
        self._collection_topic = {settings.collection(t): topic for topic, t in self.topics.items()}
        self._consumer = Consumer({
            "bootstrap.servers": settings.bootstrap,
            "group.id": settings.group,  # only for the informational offset commits
            "enable.auto.commit": False, "enable.auto.offset.store": False,
            # a stored offset the topic no longer has is an error, never a silent jump
            "auto.offset.reset": "error", "fetch.wait.max.ms": 20,
            "reconnect.backoff.max.ms": 2000,  # back within seconds of a broker restart (default 10 s)
        })
        from confluent_kafka import KafkaError

        self._gone_codes = {KafkaError._AUTO_OFFSET_RESET, KafkaError.UNKNOWN_TOPIC_OR_PART,
                            KafkaError._UNKNOWN_TOPIC, KafkaError.OFFSET_OUT_OF_RANGE}
        # per table, per column: Kafka's JSON value -> our sink's (from the capture's schemas)
        self._decoders = {t: decoders(schema, settings.modes) for t, schema in (schemas or {}).items()}
        self._skip: set[tuple[int, int]] = set()  # transactions cut short by a capture crash
        self._tx_raw, self._tx = b"", (0, 0)  # the last data message's transaction header, parsed
        self._producer: Any = None
        self.dead_letters = 0
        self._committed = Cursor.from_token(resume)
        self._read_from(self._committed)

    def _read_from(self, cursor: Cursor) -> None:
        """Forget everything read after `cursor` and read on from there."""
        from confluent_kafka import OFFSET_BEGINNING, TopicPartition

        self._queues: dict[TP, deque[_Msg]] = {tp: deque() for tp in self._partitions}
        self._next = {tp: cursor.offsets.get(tp, 0) for tp in self._partitions}
        self._paused: set[TP] = set()
        self._open: _Open | None = None
        self._done, self._seen = cursor.done, dict(cursor.seen)
        self._boundary = cursor  # after the last transaction handed over whole
        self.at_boundary = True
        self._restart = False
        self._relations: list[tuple[str, dict[str, str]]] = []  # for the next batch, before its events
        self._cut = False  # end the batch here: a relation change must come first in the next
        self._reset = False  # the next batch starts at a RESET record
        self._check_offsets(cursor)
        self._consumer.assign([TopicPartition(t, p, cursor.offsets.get((t, p), OFFSET_BEGINNING))
                               for t, p in self._partitions])

    # -- reading ----------------------------------------------------------------------
    def _fetch(self, timeout: float) -> int:
        msgs = self._consumer.consume(num_messages=5000, timeout=timeout)
        for msg in msgs:
            err = msg.error()
            if err is not None:
                if err.fatal():
                    raise KafkaTransportError(f"Kafka consumer failed: {err.str()}")
                if err.code() in self._gone_codes and self._really_gone(str(msg.topic()), err.code()):
                    raise KafkaTransportError(self._gone(str(msg.topic()), err.str()))
                continue  # transient (partition EOF, broker restarting): librdkafka retries
            topic = str(msg.topic())
            key: TP = (topic, int(msg.partition() or 0))
            offset = int(msg.offset() or 0)
            queue = self._queues.setdefault(key, deque())
            if offset < self._next.get(key, 0) or (queue and offset <= queue[-1].offset):
                continue  # re-delivered after a seek
            parsed = self._parse(msg, topic, offset)
            if parsed is not None:
                queue.append(parsed)
            elif not queue:
                self._next[key] = offset + 1
            else:
                queue.append(_Msg(offset=offset, tx=(0, 0)))  # dropped when reached
            if len(queue) > PAUSE_AT and key not in self._paused:
                self._pause(key)
        return len(msgs)

    def _gone(self, topic: str, what: str) -> str:
        return (f"Kafka topic {topic} of stream {self.settings.stream} lost messages this stream had not "
                f"applied yet ({what}): it was deleted or recreated underneath, or retention removed them. "
                f"Changes after the last commit may be missing from the target: check with `strangler "
                f"verify {self.settings.stream}` and repair with `strangler verify {self.settings.stream} "
                f"--repair` (or re-copy: `strangler cdc snapshot {self.settings.stream}`), then start the "
                f"apply half again")

    def _really_gone(self, topic: str, code: int) -> bool:
        """A missing offset is definite; a missing topic may be a broker's passing view of the
        cluster (while it restarts): ask the cluster again."""
        from confluent_kafka import KafkaError, KafkaException

        if code in (KafkaError._AUTO_OFFSET_RESET, KafkaError.OFFSET_OUT_OF_RANGE):
            return True
        try:
            meta = self._consumer.list_topics(topic, timeout=5).topics.get(topic)
        except KafkaException:
            return False
        return meta is None or (meta.error is not None and meta.error.code() in self._gone_codes)

    def _check_offsets(self, cursor: Cursor) -> None:
        """Every stored offset must still be in its topic: not past its end (deleted and
        recreated), not before its start (retention removed what was never applied)."""
        from confluent_kafka import KafkaException, TopicPartition

        for (topic, part), offset in cursor.offsets.items():
            if (topic, part) not in self._next:
                continue
            try:
                low, high = self._consumer.get_watermark_offsets(TopicPartition(topic, part), timeout=10)
            except KafkaException:
                continue  # cannot tell now (a broker restarting); the consumer errors if it is so
            if offset > high:
                raise KafkaTransportError(self._gone(topic, f"it ends at offset {high}, the target has applied "
                                                            f"up to {offset}"))
            if offset < low:
                raise KafkaTransportError(self._gone(topic, f"it starts at offset {low}, the target has applied "
                                                            f"up to {offset}"))

    def _pause(self, key: TP) -> None:
        from confluent_kafka import TopicPartition

        self._consumer.pause([TopicPartition(*key)])
        self._paused.add(key)

    def _parse(self, msg: Any, topic: str, offset: int) -> _Msg | None:
        value = msg.value()
        if value is None:
            return None  # a tombstone: for log compaction, nothing to apply
        try:
            if topic == self.settings.control_topic:
                return self._parse_control(offset, json.loads(value))
            tx_raw = order = None
            for name, raw in msg.headers() or ():
                if name == TX_HEADER:
                    tx_raw = raw
                elif name == ORDER_HEADER:
                    order = raw
            if tx_raw is None or order is None:
                raise KeyError(f"headers {TX_HEADER} and {ORDER_HEADER} are required")
            event = _event(value, msg.key())
            if event.unchanged and event.after is not None:  # Debezium's placeholders: not values
                for column in event.unchanged:
                    event.after.pop(column, None)
            codecs = self._decoders.get(event.table)
            if codecs is not None:
                if event.key is None:
                    event.key = {}
                if event.before is not None:
                    decode_row(event.before, codecs)
                decode_row(event.after, codecs)
                decode_row(event.key, codecs)
            if tx_raw != self._tx_raw:  # a transaction's events come one after another: parse once
                self._tx_raw, self._tx = tx_raw, _tx_key(tx_raw.decode())
            return _Msg(offset, self._tx, int(order), event)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            self._dead_raw(msg, f"undecodable message: {exc!r}")
            return None

    def _parse_control(self, offset: int, body: dict[str, Any]) -> _Msg:
        status = body["status"]
        tx = _tx_key(body["id"])
        if status == "MARK":  # a position with no change: the sink records it
            mark = ChangeEvent(op="m", table="", key={}, before=None, after=None,
                               position=Position(int(body["lsn"]), int(body["index"])),
                               ts_ms=int(body.get("ts_ms") or 0), last=True)
            return _Msg(offset=offset, tx=tx, status=status, event=mark)
        if status == "RELATION":  # a change of columns the capture accepted, in its place
            table, columns = str(body["table"]), {str(k): str(v) for k, v in body["columns"].items()}
            # later values of the table decode by its new columns (the record is read before them)
            self._decoders[table] = decoders(TableSchema(name=table, columns=columns, pk=()), self.settings.modes)
            return _Msg(offset=offset, tx=tx, status=status, order=int(body.get("order") or 0),
                        relation=(table, columns))
        if status == "EVENT":  # a snapshot marker in its place in transaction `tx`
            return _Msg(offset=offset, tx=tx, status=status, order=int(body["order"]),
                        event=ChangeEvent.from_envelope(body["event"], body.get("key") or {}))
        counts = None
        if status == "END":
            counts = {self._collection_topic.get(str(dc["data_collection"]), ""): int(dc["event_count"])
                      for dc in body.get("data_collections") or ()}
        return _Msg(offset=offset, tx=tx, status=status, counts=counts)

    # -- reassembly -------------------------------------------------------------------
    def _pop(self, key: TP) -> _Msg:
        item = self._queues[key].popleft()
        self._next[key] = item.offset + 1
        if key in self._paused and len(self._queues[key]) < PAUSE_AT // 2:
            from confluent_kafka import TopicPartition

            self._consumer.resume([TopicPartition(*key)])
            self._paused.discard(key)
        return item

    def _whole(self, tx: tuple[int, int]) -> None:
        """Transaction `tx` is handed over whole: a boundary, and where to resume after it."""
        self._done, self._open = tx, None
        self.at_boundary = True
        self._boundary = Cursor(offsets=dict(self._next), done=tx, seen=dict(self._seen))

    def _next_transaction(self, out: list[ChangeEvent]) -> bool:
        """Move to the next BEGIN on the control topic, or hand over the next MARK (a
        whole transaction of one message event); False if neither is here yet."""
        txq = self._queues[self._tx_tp]
        while txq:
            head = txq[0]
            fresh = head.tx is not None and head.tx > self._done and head.tx not in self._skip
            if fresh and head.relation is not None and not self._take_relation(out):
                return False
            if fresh and head.status == "RESET":
                if out:  # it starts a batch: what came before is committed first
                    self._cut = True
                    return False
                self._pop(self._tx_tp)
                assert head.tx is not None
                self._reset, self._seen = True, {}  # positions of the old capture point drop nothing
                self._whole(head.tx)
                return True
            self._pop(self._tx_tp)
            if fresh and head.relation is not None:
                assert head.tx is not None
                self._whole(head.tx)
                return True
            if fresh and head.status == "BEGIN":
                assert head.tx is not None
                self._open = _Open(head.tx)
                return True
            if fresh and head.status == "MARK" and head.event is not None:
                assert head.tx is not None
                out.append(head.event)
                self._whole(head.tx)
                return True
            # else: the END of one handed over already, or a stale/undecodable record
        return False

    def _take_relation(self, out: list[ChangeEvent]) -> bool:
        """A relation change is next: it goes first in a batch of its own (the applier changes
        its mapping before writing what follows), so the batch so far ends here."""
        if out:
            self._cut = True
            return False
        head = self._queues[self._tx_tp][0]
        assert head.relation is not None
        self._relations.append(head.relation)
        return True

    def _find(self, cur: tuple[int, int], order: int) -> TP | None:
        """The partition whose head is event `order` of transaction `cur`, if any is: a data
        topic, or the control topic when that event is a snapshot marker."""
        for key, queue in self._queues.items():
            while queue and queue[0].tx is not None and queue[0].tx < cur:
                self._pop(key)  # a dead transaction's events, or an undecodable one
            head = queue[0] if queue else None
            if head and head.tx == cur and head.order == order and (head.event or head.relation):
                return key
        return None

    def _cut_short(self, tx: _Open) -> bool:
        """Did a newer capture process begin while `tx` was open (its process died)?

        Once `tx`'s END record is here it says how many events each topic got: a topic
        still owing some whose next message belongs to another transaction lost them (the
        process died before they were delivered; the new one re-publishes them), but one
        with nothing buffered yet is only late (fetched later on a busy machine) — skipping
        `tx` then would lose a committed transaction.
        """
        if tx.counts is not None:
            return self._lost(tx, tx.counts)
        txq = self._queues[self._tx_tp]
        starts = ("BEGIN", "MARK", "RESET")  # what a capture publishes after a transaction's END
        while txq and (txq[0].status not in starts or txq[0].tx is None or txq[0].tx[0] <= tx.tx[0]):
            if txq[0].status in starts and txq[0].tx is not None and txq[0].tx > tx.tx:
                return False  # a later transaction of the same process: tx will complete
            if txq[0].status in ("EVENT", "RELATION") and txq[0].tx == tx.tx:
                return False  # a later marker of tx came after what a data topic still owes: late
            if txq[0].status == "END" and txq[0].tx == tx.tx and txq[0].counts is not None:
                tx.counts = txq[0].counts
                return self._lost(tx, tx.counts)
            self._pop(self._tx_tp)  # END records, stale ones
        return bool(txq)

    def _lost(self, tx: _Open, counts: dict[str, int]) -> bool:
        """Did a topic that still owes `tx` events move on to another transaction?"""
        for topic, n in counts.items():
            if tx.popped.get(topic, 0) >= n:
                continue
            queue = self._queues.get((topic, 0))
            if queue and queue[0].tx != tx.tx:
                return True
        return False

    def _stream(self, out: list[ChangeEvent], limit: int) -> bool:
        """Append the open transaction's next events in source order; True on progress."""
        tx = self._open
        assert tx is not None
        progressed = False
        key: TP | None = None  # where the last event came from: usually where the next one is
        while len(out) < limit:
            queue = self._queues.get(key) if key is not None else None
            head = queue[0] if queue else None
            if head is None or head.tx != tx.tx or head.order != tx.order + 1 or head.event is None:
                key = self._find(tx.tx, tx.order + 1)
            if key is None:
                if self._cut_short(tx):
                    # Its events are re-published under the new epoch. If part of it was
                    # handed over, the sink rolls back and we re-read from the commit.
                    self._skip.add(tx.tx)
                    self._open = None
                    self._restart = not self.at_boundary
                    return True
                return progressed
            if self._queues[key][0].relation is not None:
                if not self._take_relation(out):
                    return progressed
                self._pop(key)
                tx.order += 1
                progressed = True
                continue
            m = self._pop(key)
            tx.popped[key[0]] = tx.popped.get(key[0], 0) + 1
            tx.order += 1
            progressed = True
            ev = m.event
            assert ev is not None
            self.at_boundary = False
            if not ev.position[0] or ev.position > self._seen.get(ev.table, (0, 0)):
                if ev.position[0]:  # initial-copy events (LSN 0) are never duplicates
                    self._seen[ev.table] = ev.position
                out.append(ev)
            # else: re-published after a capture restart, handed over already
            if ev.last:
                self._whole(tx.tx)
                return True
        return progressed

    def receive(self, max_events: int, timeout: float = 0.0) -> Batch:
        """The next events in source commit order, transactions possibly split across calls.

        Stops at a boundary once `max_events` are reached, unless the open transaction
        cannot finish from what is buffered (a large one: it streams through in parts).
        """
        out: list[ChangeEvent] = []
        deadline = time.monotonic() + timeout
        self._cut = False
        while not self._restart and not self._cut:
            full = len(out) >= max_events
            if full and self.at_boundary:
                break
            if self._open is None:
                if not full and self._next_transaction(out):
                    continue
            elif self._stream(out, 1 << 62 if full else max_events):
                continue
            elif full:
                break  # the open transaction cannot finish from what is here: hand over a part
            wait = 0.0 if out else max(0.0, deadline - time.monotonic())
            if not self._fetch(min(wait, 0.1)) and (out or wait <= 0):
                break
        if self._restart:
            return Batch(restart=True)
        relations, self._relations = tuple(self._relations), []
        reset, self._reset = self._reset, False
        return Batch(out, boundary=self.at_boundary, relations=relations, reset=reset,
                     resume=self._boundary.token() if self.at_boundary else None)

    def reopen(self, resume: Resume | None) -> None:
        """Forget everything after the last commit and read again from there: the sink
        rolled back (a transaction it had partly applied was cut short by a capture crash)."""
        self._committed = Cursor.from_token(resume)
        self._read_from(self._committed)

    def committed(self, position: Position | None, resume: Resume | None) -> None:
        """The sink committed everything up to the last boundary, with `resume`."""
        from confluent_kafka import KafkaException, TopicPartition

        self._committed = Cursor.from_token(resume)
        tps = [TopicPartition(t, p, o) for (t, p), o in self._committed.offsets.items()]
        if tps:
            # Informational only (consumer-lag tools read it): the target holds the real offsets.
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


__all__ = ["TP", "Cursor", "KafkaApply"]
