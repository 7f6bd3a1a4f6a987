"""The Kafka capture end's own checkpoint, on the compacted topic ``__strangler-capture.<prefix>``.

A capture half that runs apart from its apply half must know where its source resumes and
how far each table's copy got without opening the target. It keeps that here, one record
per key (compaction keeps the latest):

    position       {"lsn", "index"}: the last position Kafka acknowledged, and the source with it
    copy:<table>   {"state", "after", "rows"}: the table's copy as far as Kafka holds it

A record is sent only once everything it speaks for is acknowledged (the capture end calls
`copied` and `advanced` from ``durable()``, in order), so what it says is never ahead of
Kafka. A crash can leave it behind by the records in flight: the copy then resumes one chunk
early (the sink skips the rows of that chunk it holds) and the source from an earlier
position (the apply end drops what it handed over already, by position).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from typing import Any

from cdc.events import Position, json_default
from cdc.transport import CopyState, Progress
from cdc.transport.kafka_topics import KafkaSettings, read_compacted

POSITION = "position"
COPY = "copy:"

Send = Callable[[str, bytes, bytes | None], None]  # (topic, key, value | None for a tombstone)


def load(settings: KafkaSettings, timeout: float = 30.0) -> Progress:
    """The progress the topic holds (empty for a stream never captured)."""
    progress = Progress()
    for key, value in read_compacted(settings, settings.capture_topic, timeout).items():
        body = json.loads(value)
        if key == POSITION:
            progress.position = Position(int(body["lsn"]), int(body["index"]))
        elif key.startswith(COPY):
            progress.copies[key[len(COPY):]] = (str(body["state"]), body.get("after"), int(body.get("rows") or 0))
    return progress


class ProgressLog:
    """Writes one capture end's progress as it becomes durable; `progress` is what it says."""

    def __init__(self, settings: KafkaSettings, send: Send, progress: Progress) -> None:
        self.settings = settings
        self.progress = progress
        self._send = send
        self._position_sent_at = 0.0

    def copied(self, copies: dict[str, CopyState]) -> None:
        """These tables' copies got this far, and Kafka holds all of it."""
        for table, (state, after, rows) in copies.items():
            self.progress.copies[table] = (state, after, rows)
            body = {"state": state, "after": after, "rows": rows}
            self._put(f"{COPY}{table}", json.dumps(body, default=json_default, separators=(",", ":")).encode())

    def advanced(self, position: Position, *, now: bool = False) -> None:
        """Kafka holds everything up to `position`: recorded at most once a second (or `now`)."""
        self.progress.position = position
        at = time.monotonic()
        if now or at - self._position_sent_at >= 1.0:
            self._position_sent_at = at
            self._put(POSITION, json.dumps({"lsn": position.lsn, "index": position.seq}).encode())

    def forget(self, tables: Iterable[str] = ()) -> None:
        """A new capture point: nothing recorded so far holds (tombstones for every key)."""
        for table in {*self.progress.copies, *tables}:
            self._put(f"{COPY}{table}", None)
        self._put(POSITION, None)
        self.progress.position, self.progress.copies = None, {}

    def _put(self, key: str, value: bytes | None) -> None:
        self._send(self.settings.capture_topic, key.encode(), value)


def forget(settings: KafkaSettings, tables: Iterable[str], timeout: float = 30.0) -> None:
    """Clear a stream's capture progress (``strangler cdc drop``): its next run starts afresh."""
    from confluent_kafka import Producer

    from cdc.transport.kafka_topics import KafkaTransportError, ensure_topics

    ensure_topics(settings, list(tables))
    producer: Any = Producer({"bootstrap.servers": settings.bootstrap, "enable.idempotence": True, "acks": "all"})
    failed: list[str] = []

    def delivered(err: Any, _msg: Any) -> None:
        if err is not None:
            failed.append(str(err))

    log = ProgressLog(settings, lambda topic, key, value: producer.produce(topic, key=key, value=value,
                                                                           on_delivery=delivered),
                      load(settings, timeout))
    log.forget(tables)
    if producer.flush(timeout) or failed:
        raise KafkaTransportError(f"could not clear {settings.capture_topic} at {settings.bootstrap}: "
                                  f"{failed[0] if failed else 'timed out'}")


__all__ = ["ProgressLog", "forget", "load"]
