"""The direct transport: source and sink in one process, events handed over in memory.

The pipeline captures in one thread and applies in another (psycopg2 releases the GIL
while the target works, so decoding overlaps with writing). The queue is bounded: a
publisher waits while `max_pending` events are queued, so a fast source cannot outrun the
sink's memory. A position is durable as soon as the sink has committed it.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence

from cdc.events import ChangeEvent, Position


class DirectTransport:
    """An in-memory bounded FIFO; ``durable()`` is the sink's last committed position."""

    def __init__(self, max_pending: int = 20_000) -> None:
        self._queue: deque[ChangeEvent] = deque()
        self._durable: Position | None = None
        self._cond = threading.Condition()
        self._closed = False
        self.max_pending = max_pending

    def publish(self, events: Sequence[ChangeEvent]) -> None:
        with self._cond:
            while len(self._queue) >= self.max_pending and not self._closed:
                self._cond.wait(0.1)
            self._queue.extend(events)
            self._cond.notify_all()

    def durable(self) -> Position | None:
        return self._durable

    def consume(self, max_events: int, timeout: float = 0.0) -> list[ChangeEvent]:
        with self._cond:
            if not self._queue and timeout > 0:
                self._cond.wait(timeout)
            n = min(max_events, len(self._queue))
            out = [self._queue.popleft() for _ in range(n)]
            if out:
                self._cond.notify_all()
            return out

    def commit(self, position: Position) -> None:
        if self._durable is None or position > self._durable:
            self._durable = position

    def pending(self) -> int:
        return len(self._queue)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._queue.clear()
            self._cond.notify_all()
