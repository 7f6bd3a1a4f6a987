"""The direct transport: source and sink in one process, events handed over in memory.

The pipeline alternates capture and apply in one thread, so the buffer holds at most one
read batch; a position is durable as soon as the sink has committed it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from cdc.events import ChangeEvent, Position


class DirectTransport:
    """An in-memory FIFO; ``durable()`` is the sink's last committed position."""

    def __init__(self) -> None:
        self._queue: deque[ChangeEvent] = deque()
        self._durable: Position | None = None

    def publish(self, events: Sequence[ChangeEvent]) -> None:
        self._queue.extend(events)

    def durable(self) -> Position | None:
        return self._durable

    def consume(self, max_events: int, timeout: float = 0.0) -> list[ChangeEvent]:
        # No waiting: in one thread nothing can arrive while we wait.
        n = min(max_events, len(self._queue))
        return [self._queue.popleft() for _ in range(n)]

    def commit(self, position: Position) -> None:
        if self._durable is None or position > self._durable:
            self._durable = position

    def pending(self) -> int:
        return len(self._queue)

    def close(self) -> None:
        self._queue.clear()
