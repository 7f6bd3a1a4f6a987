"""The Kafka transport's apply side: the stream's topics -> source transactions, in order.

One consumer in a group (static membership, range assignment: every single-partition topic
of a stream goes to one member; others stand by) reads ``<prefix>.transaction`` and every
table topic. Transactions are taken in the order of their BEGIN records, and each one's
events in ``total_order`` from whichever table topic holds the next one, so a parent row
is written before its child even when they travel in different topics. A large
transaction streams through in parts: ``at_boundary`` tells the apply loop
(:mod:`cdc.transport.kafka_run`) when the sink may commit, and ``offsets()`` what to store
with the rows so a restart resumes exactly there.

A transaction cut short by a capture crash (a newer epoch's BEGIN arrives before its last
event) is skipped — the restarted capture re-publishes it — and if part of it was handed
over already, ``rewind_needed`` asks the loop to roll back and ``rewind()`` re-reads from the
last commit. Events re-published after a capture restart are dropped by position per table.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cdc.events import ChangeEvent, Position
from cdc.transport.kafka import PAUSE_AT, KafkaSettings, KafkaTransportError, ensure_topics


def _tx_key(tx_id: str) -> tuple[int, int]:
    epoch, _, n = tx_id.partition(":")
    return int(epoch), int(n)


@dataclass(slots=True)
class _Msg:
    offset: int
    tx: tuple[int, int] | None  # data: its transaction; tx topic: the record's
    order: int = 0
    event: ChangeEvent | None = None
    status: str = ""  # BEGIN / END / MARK on the transaction topic
    counts: dict[str, int] | None = None  # END: the transaction's events per data topic


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
        self._order = 0  # events of the current transaction handed over
        self._done: tuple[int, int] = (0, 0)  # the last transaction handed over whole
        self._skip: set[tuple[int, int]] = set()  # transactions cut short by a capture crash
        # the open transaction's END (its events per topic), and what of them was handed over
        self._ended: tuple[tuple[int, int], dict[str, int]] | None = None
        self._popped: dict[str, int] = {}
        self._collection_topic = {settings.collection(t): topic for topic, t in self.topics.items()}
        self._handed: dict[TP, int] = {}  # resume offsets at the last boundary
        self._seen: dict[str, Position] = {}  # per table, the last position handed over
        self._seen_at_boundary: dict[str, Position] = {}
        self._done_at_boundary: tuple[int, int] = (0, 0)
        # what the sink last committed: resume offsets, seen positions, last transaction
        self._committed: tuple[dict[TP, int], dict[str, Position], tuple[int, int]] = ({}, {}, (0, 0))
        self.at_boundary = True
        self.rewind_needed = False
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
            self._handed.setdefault(key, self._next[key])
            self._committed[0].setdefault(key, self._next[key])
        # Buffered messages of a partition we had before are re-read from its resume offset.
        self._current = None
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
                mark = None
                if body["status"] == "MARK":  # a position with no change: the sink records it
                    mark = ChangeEvent(op="m", table="", key={}, before=None, after=None,
                                       position=Position(int(body["lsn"]), int(body["index"])),
                                       ts_ms=int(body.get("ts_ms") or 0), last=True)
                counts = None
                if body["status"] == "END" and body.get("data_collections"):
                    counts = {self._collection_topic.get(str(dc["data_collection"]), ""): int(dc["event_count"])
                              for dc in body["data_collections"]}
                return _Msg(offset=msg.offset(), tx=_tx_key(body["id"]), status=body["status"],
                            event=mark, counts=counts)
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

    def _next_transaction(self, out: list[ChangeEvent]) -> bool:
        """Move to the next BEGIN on the transaction topic, or hand over the next MARK (a
        whole transaction of one message event); False if neither is here yet."""
        txq = self._queues.get((self.settings.tx_topic, 0))
        while txq:
            head = txq[0]
            self._pop((self.settings.tx_topic, 0))
            fresh = head.tx is not None and head.tx > self._done and head.tx not in self._skip
            if fresh and head.status == "BEGIN":
                assert head.tx is not None
                self._current, self._order, self._popped = head.tx, 0, {}
                return True
            if fresh and head.status == "MARK" and head.event is not None:
                assert head.tx is not None
                out.append(head.event)
                self._done = self._done_at_boundary = head.tx
                self.at_boundary = True
                self._handed, self._seen_at_boundary = dict(self._next), dict(self._seen)
                return True
            # else: the END of one handed over already, or a stale/undecodable record
        return False

    def _find(self, cur: tuple[int, int], order: int) -> TP | None:
        """The partition whose head is event `order` of transaction `cur`, if any is."""
        for key, queue in self._queues.items():
            if key[0] == self.settings.tx_topic:
                continue
            while queue and queue[0].tx is not None and queue[0].tx < cur:
                self._pop(key)  # a dead transaction's events, or an undecodable one
            if queue and queue[0].tx == cur and queue[0].order == order:
                return key
        return None

    def _cut_short(self, cur: tuple[int, int]) -> bool:
        """Did a newer capture process begin while `cur` was open (its process died)?

        Once `cur`'s END record is here it says how many events each topic got: a topic
        still owing some whose next message belongs to another transaction lost them (the
        process died before they were delivered; the new one re-publishes them), but one
        with nothing buffered yet is only late (fetched later on a busy machine) — skipping
        `cur` then would lose a committed transaction.
        """
        if self._ended is not None and self._ended[0] == cur:
            return self._lost(cur, self._ended[1])
        txq = self._queues.get((self.settings.tx_topic, 0))
        starts = ("BEGIN", "MARK")  # what a capture publishes after a transaction's END
        while txq and (txq[0].status not in starts or txq[0].tx is None or txq[0].tx[0] <= cur[0]):
            if txq[0].status in starts and txq[0].tx is not None and txq[0].tx > cur:
                return False  # a later transaction of the same process: cur will complete
            if txq[0].status == "END" and txq[0].tx == cur and txq[0].counts is not None:
                self._ended = (cur, txq[0].counts)
                return self._lost(cur, txq[0].counts)
            self._pop((self.settings.tx_topic, 0))  # END records, stale ones
        return bool(txq)

    def _lost(self, cur: tuple[int, int], counts: dict[str, int]) -> bool:
        """Did a topic that still owes `cur` events move on to another transaction?"""
        for topic, n in counts.items():
            if self._popped.get(topic, 0) >= n:
                continue
            for key, queue in self._queues.items():
                if key[0] == topic and queue and queue[0].tx != cur:
                    return True
        return False

    def _stream(self, out: list[ChangeEvent], limit: int) -> bool:
        """Append the current transaction's next events in source order; True on progress."""
        cur = self._current
        assert cur is not None
        progressed = False
        while len(out) < limit:
            key = self._find(cur, self._order + 1)
            if key is None:
                if self._cut_short(cur):
                    # Its events are re-published under the new epoch. If part of it was
                    # handed over, the apply loop rolls back and we re-read from the commit.
                    self._skip.add(cur)
                    self._current = None
                    self.rewind_needed = not self.at_boundary
                    return True
                return progressed
            m = self._pop(key)
            self._popped[key[0]] = self._popped.get(key[0], 0) + 1
            self._order += 1
            progressed = True
            ev = m.event
            assert ev is not None
            self.at_boundary = False
            last = ev.last
            if not ev.position[0] or ev.position > self._seen.get(ev.table, (0, 0)):
                if ev.position[0]:  # initial-copy events (LSN 0) are never duplicates
                    self._seen[ev.table] = ev.position
                out.append(ev)
            # else: re-published after a capture restart, handed over already
            if last:
                self._done, self._current = cur, None
                self.at_boundary = True
                self._handed, self._seen_at_boundary = dict(self._next), dict(self._seen)
                self._done_at_boundary = cur
                return True
        return progressed

    def consume(self, max_events: int, timeout: float = 0.0) -> list[ChangeEvent]:
        """The next events in source commit order, transactions possibly split across calls.

        ``at_boundary`` says whether the last one returned ends a source transaction: only
        then may the sink commit (with ``offsets()``, then call ``commit``). Stops at a
        boundary once `max_events` are reached, unless the open transaction cannot finish
        from what is buffered (a large one: it streams through in parts). ``rewind_needed``
        says the sink must roll back and call ``rewind()``.
        """
        out: list[ChangeEvent] = []
        deadline = time.monotonic() + timeout
        while not self.rewind_needed:
            full = len(out) >= max_events
            if full and self.at_boundary:
                break
            if self._current is None:
                if not full and self._next_transaction(out):
                    continue
            elif self._stream(out, 1 << 62 if full else max_events):
                continue
            elif full:
                break  # the open transaction cannot finish from what is here: hand over a part
            wait = 0.0 if out else max(0.0, deadline - time.monotonic())
            if not self._fetch(min(wait, 0.1)) and (out or wait <= 0):
                break
        return out

    def rewind(self) -> None:
        """Forget everything after the last commit and re-read from there: the sink rolled
        back because a transaction it had partly applied was cut short by a capture crash."""
        from confluent_kafka import TopicPartition

        offsets, seen, done = self._committed
        self._seen, self._done = dict(seen), done
        if self._paused:
            self._consumer.resume([TopicPartition(*key) for key in self._paused])
            self._paused.clear()
        for key, queue in self._queues.items():
            queue.clear()
            self._next[key] = offsets.get(key, 0)
            with contextlib.suppress(Exception):
                self._consumer.seek(TopicPartition(key[0], key[1], self._next[key]))
        self._handed = dict(offsets)
        self._current, self.rewind_needed, self.at_boundary = None, False, True

    def offsets(self) -> dict[TP, int]:
        """Where to resume after the last transaction handed over whole."""
        return dict(self._handed)

    def commit(self, position: Position) -> None:
        """The sink committed everything up to the last boundary (with ``offsets()``)."""
        from confluent_kafka import KafkaException, TopicPartition

        self._committed = (dict(self._handed), dict(self._seen_at_boundary), self._done_at_boundary)
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


__all__ = ["TP", "KafkaApply"]
