"""The direct transport: source and sink in one process, events handed over in memory.

The pipeline captures in one thread and applies in another (psycopg2 releases the GIL
while the target works, so decoding overlaps with writing). The queue is bounded: a
publisher waits while `max_pending` events are queued, so a fast source cannot outrun the
sink's memory. A position is durable as soon as the sink has committed it; everything
handed over is written once the applier comes back for more (what ``flush`` waits for).
The sink's checkpoints are the capture's progress (``progress()`` is None), and a new
capture point travels through the queue in its place (``start_over``: ``batch.reset``).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

from cdc.events import ChangeEvent, Position
from cdc.mapping import TableSchema
from cdc.transport import Batch, Progress, Resume

_START_OVER = object()  # in the queue: the sink forgets its checkpoints here


class DirectTransport:
    """An in-memory bounded FIFO, both ends in one object; ``durable()`` is the sink's last
    committed position."""

    in_process = True

    def __init__(self, max_pending: int = 20_000) -> None:
        self._queue: deque[ChangeEvent | object] = deque()
        self._durable: Position | None = None
        self._cond = threading.Condition()
        self._closed = False
        self._published = 0
        self._handed = 0  # handed to the applier
        self._written = 0  # handed and written: the applier came back for more
        self._resets = 0  # start-over markers in the queue
        self.max_pending = max_pending

    def publisher(self) -> DirectTransport:
        return self

    def subscriber(self, resume: Resume | None) -> DirectTransport:
        return self

    # -- capture end --------------------------------------------------------------------
    def publish(self, events: Sequence[ChangeEvent]) -> None:
        with self._cond:
            while len(self._queue) >= self.max_pending and not self._closed:
                self._cond.wait(0.1)
            self._queue.extend(events)
            self._published += len(events)
            self._cond.notify_all()

    def durable(self) -> Position | None:
        return self._durable

    def flush(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._written < self._published and not self._closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
        return self._written >= self._published

    def describe(self, schemas: Mapping[str, TableSchema], *, changed: bool = False) -> None:
        return None  # the sink shares the capture's mappings: it knows already

    def progress(self) -> Progress | None:
        return None  # the sink's checkpoints, committed with the rows in this process

    def start_over(self) -> None:
        with self._cond:
            self._queue.append(_START_OVER)
            self._resets += 1
            self._published += 1
            self._cond.notify_all()

    # -- apply end ----------------------------------------------------------------------
    def receive(self, max_events: int, timeout: float = 0.0) -> Batch:
        with self._cond:
            self._written = self._handed  # it is asking again: the last batch is written
            self._cond.notify_all()
            if not self._queue and timeout > 0:
                self._cond.wait(timeout)
            queue = self._queue
            if self._resets and queue and queue[0] is _START_OVER:
                queue.popleft()
                self._resets -= 1
                self._handed += 1
                self._cond.notify_all()
                return Batch(boundary=True, reset=True)
            out: list[ChangeEvent]
            if self._resets:  # stop short of the marker: it is a batch of its own
                out = []
                while queue and len(out) < max_events and queue[0] is not _START_OVER:
                    out.append(queue.popleft())  # type: ignore[arg-type]
            else:
                out = [queue.popleft() for _ in range(min(max_events, len(queue)))]  # type: ignore[misc]
            self._handed += len(out)
            if out:
                self._cond.notify_all()
        return Batch(out, boundary=bool(out) and out[-1].last)

    def committed(self, position: Position | None, resume: Resume | None) -> None:
        if position is not None and (self._durable is None or position > self._durable):
            self._durable = position

    def reopen(self, resume: Resume | None) -> None:
        return None  # never asked to restart: the queue hands over each event once

    def dead_letter(self, event: ChangeEvent, reason: str) -> None:
        return None  # the sink's dead-letter table is the record

    def pending(self) -> int:
        return len(self._queue)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._queue.clear()
            self._cond.notify_all()


def make_transport(cfg: Any) -> DirectTransport:
    return DirectTransport()


__all__ = ["DirectTransport", "make_transport"]
